"""Model families: WaveNet regressor (Khan, Huerta & Das); flows and ResNet1D+IAF come with later issues."""
