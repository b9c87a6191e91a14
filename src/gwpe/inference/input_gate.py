"""The data-quality gate of ``gwpe infer``: is the input the kind of data the model was trained on?

``check_input`` runs before the model (on the data), ``check_posterior`` after sampling (on the samples); each
check is a ``Check`` record (name, value, allowed range as text, status ``pass`` / ``FAIL`` / ``not run`` /
``flag``, a one-line detail). ``enforce`` turns failed checks into ONE-line ``InputError`` naming the first failed
check (the CLI prints it and exits 2), unless ``force``, which returns their messages to record. ``format_checks``
is the table ``gwpe infer`` prints on stderr; ``Check.as_dict`` is what it stores (``checks`` attribute).

Checks and thresholds (L = the model's window of ``duration`` s at ``sample_rate`` Hz, fs = sample_rate):

1. **sample rate**: the file's rate must be fs or k fs (k integer). k > 1 is allowed for raw strain only
   (``--whiten``): it is decimated with ``scipy.signal.resample_poly`` (Kaiser-windowed FIR low-pass at the model's
   Nyquist frequency, zero phase); whitened strain is never resampled (its unit variance is per sample of the
   rate it was whitened at). Any other rate is refused at once (not forceable: there is nothing to run on).
2. **noise PSD** (off-source): when the input holds more than the window (``--start`` inside a longer segment),
   the off-source data is everything except the window +- ``OFF_SOURCE_MARGIN`` = 0.5 s (keeps the signal, whose
   whitened inspiral and ringdown last well under 0.5 s outside a window that holds the merger, out of the noise
   estimate) and ``EDGE`` = 0.5 s at each end of the input (the 0.1-s Tukey taper and the settling of the
   whitening filter, the ``FILTER_MARGIN`` of the dataset generator). Per channel, the one-sided PSD of the
   *whitened* off-source data is estimated with ``scipy.signal.welch(average="median")`` (Hann window, segments
   of ``WELCH_SEGMENT`` = 1 s, i.e. 1-Hz resolution, 50 % overlap; the median average ignores a glitch or line
   burst in a few segments), one estimate per contiguous off-source piece, the pieces averaged weighted by their
   segment counts. Whitening divides by the model's PSD S_n in the band, and unit-variance white noise sampled
   at fs has the one-sided PSD 2 / fs, so

       R(f) = S_white(f) / (2 / fs) = S_data(f) / S_n(f)    for f in [f_min, 0.9 fs / 2]

   is the data's PSD over the model's (for raw strain, ``--whiten``) or over that of unit-variance white noise
   (already-whitened input). Estimating S_data in the whitened domain rather than on raw strain keeps the
   enormous sub-f_min noise of real detector strain (seismic, ~10^8 x in power) from leaking through the Welch
   window into the low end of the band, and measures exactly what the model would receive. The band stops at
   0.9 x Nyquist, below the transition band of the decimation filter. Statistic: the median of R over the band
   per channel, allowed ``PSD_RATIO`` = 0.5-2 (a factor 2 in PSD is a factor 1.4 in noise amplitude, hence in
   every SNR and in the posterior widths; a matching PSD gives 0.9-1.1 with >= 4 segments), and the median of R
   in each octave [f_min 2^k, f_min 2^(k+1)) of the band, allowed ``OCTAVE_RATIO`` = 0.25-4 (catches a PSD
   wrong in part of the band, e.g. the 20-40 Hz octave where real detectors depart most from design curves,
   while the band median passes; twice the band tolerance since an octave holds fewer bins). Needs at least
   ``MIN_SEGMENTS`` = 4 Welch segments of off-source data (with fewer, the median of a few chi^2_2 periodograms
   is too noisy for a 2x tolerance); otherwise, and when the input is only the window, "not run".
3. **noise variance** and **noise normality** (off-source, same samples): whitened with the model's PSD (the
   whitening of ``whiten``) noise that matches the model's is N(0, 1) per sample in band (variance
   1 - 2 f_min / fs, 0.96 at 20 Hz and 1024 Hz). Per channel the variance, allowed ``VARIANCE`` = 0.5-2 (the
   PSD tolerance, integrated over the band), and the excess kurtosis k = <x^4> / <x^2>^2 - 3, allowed
   |k| <= ``KURTOSIS`` = 0.5. A p-value test (Shapiro, Anderson-Darling) is too strict with ~30 000 samples of
   real noise, whose tiny non-Gaussianities become "significant"; the kurtosis has a standard error of
   sqrt(24 / N) (0.03 at N = 30 000, 0.1 at 2 000), so 0.5 leaves room for sampling noise while a glitch (one
   50-sigma spike adds 50^4 / N ~ 200 at N = 30 000) or noise dominated by spectral lines (a sinusoid has
   k = -1.5) fails.
4. **on-source RMS**: the whitened window's RMS must be within ``WHITENED_RMS`` = 0.5-3 (unit-variance noise
   plus a signal of SNR <~ 50 over L ~ 1000 samples), whether the window was whitened here (``--whiten``) or by the
   user; it runs whether or not there is off-source data. For already-whitened input it catches a scale error
   (x100 or x0.01), garbage values, and strain whitened twice. Already-whitened input with an RMS below
   ``UNWHITENED_RMS`` = 1e-3 is refused as unwhitened strain (a plain one-line error, not a check).
5. **signal SNR** (after sampling): the network optimal SNR rho = sqrt(4 df sum_f |h~(f)|^2 / S_n(f)) (summed
   over detectors) of the noise-free template at the posterior median (per-parameter median of the samples;
   parameters the model does not infer take ``gwpe.waveforms.priors.FIXED``, as in the likelihood's templates),
   generated with the model's data spec (approximant, PSD, f_min, f_ref, detectors, reference GPS) by
   ``gwpe.waveforms.strain.StrainGenerator``. This is the frequency-domain formula of the training store's
   ``snr`` array, from which the package's ``training_snr`` quantiles come; it equals sqrt(sum x^2) of the
   whitened template over the whole long segment (Parseval), and exceeds the in-window value (reported in the
   detail) by the inspiral before the window. Allowed: [p01 / ``SNR_FACTOR``, max x ``SNR_FACTOR``] with
   ``SNR_FACTOR`` = 1.5: the low end at the 1st percentile (the minimum is one outlier of the training set),
   the high end at the loudest training signal (the model has seen up to it, and the SNR distribution of a
   volumetric prior has a long upper tail); the factor 1.5 is the scatter of a posterior-median template's SNR
   around the true one (rho scales as 1 / d_L, whose posterior is tens of per cent wide). A median outside the
   prior support fails too. Packages without ``training_snr`` (saved before gwpe recorded it): "not run".
6. **prior bounds** (after sampling, a flag, never a refusal): per parameter with a bounded, non-periodic prior
   (periodic phi0, ra, psi are skipped: mass at 0 and 2 pi is one place), the fraction of samples in the outer
   ``PILE_EDGE`` = 1 % of its prior range at either end; more than ``PILE_FRACTION`` = 10 % at one end is
   flagged (status ``flag``, a warning line, the ``prior_bound_flags`` attribute). The prior itself puts at most
   ~2 % there (uniform: 1 %; the volumetric d_L and the m1 >= m2 triangle: ~2 % at the upper end), so 10 % means
   the likelihood pushes against the bound: the event is probably outside the model's prior.
7. **prior support** (after sampling, first): non-finite samples are refused outright (not forceable, nothing is
   written); more than ``SUPPORT_TOLERANCE`` = 0.1 % of the samples at zero prior density (the model
   extrapolated: e.g. strain mis-scaled by x0.01 put d_L at 7,000 Mpc for a prior ending at 3,000) fails.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from gwpe.data.strain_store import PLUS_POLARISATION
from gwpe.data.strain_store import channels as channel_count
from gwpe.errors import InputError
from gwpe.inference.strain_files import StrainInput

PASS, FAIL, NOT_RUN, FLAG = "pass", "FAIL", "not run", "flag"
UNWHITENED_RMS = 1e-3  # whitened noise has RMS 1; detector strain ~1e-21
WHITENED_RMS = (0.5, 3.0)  # the window after --whiten: unit-variance noise plus a signal of SNR <~ 50
OFF_SOURCE_MARGIN = 0.5  # s excluded on each side of the window from the noise estimate
EDGE = 0.5  # s excluded at each end of the input (taper, whitening-filter settling)
WELCH_SEGMENT = 1.0  # s per Welch segment (1-Hz resolution), 50 % overlap, Hann window
MIN_SEGMENTS = 4  # Welch segments of off-source data needed for the noise checks
BAND_TOP = 0.9  # the PSD band stops at 0.9 x Nyquist (below the decimation filter's transition band)
PSD_RATIO = (0.5, 2.0)  # median over the band of S_data / S_model, per channel
OCTAVE_RATIO = (0.25, 4.0)  # median over each octave of the band of S_data / S_model
VARIANCE = (0.5, 2.0)  # off-source whitened variance per channel
KURTOSIS = 0.5  # |excess kurtosis| of off-source whitened samples per channel
SNR_FACTOR = 1.5  # allowed optimal SNR at the posterior median: [p01 / 1.5, max x 1.5] of the training set
PILE_EDGE = 0.01  # the outer 1 % of a parameter's prior range
PILE_FRACTION = 0.1  # more than 10 % of the samples there (at one end) is flagged
PERIODIC = ("phi0", "ra", "psi")
SUPPORT_TOLERANCE = 0.001  # fraction of samples allowed outside the prior (float32 rounding at a bound)


@dataclass
class Check:
    """One data-quality check: its value and allowed range as text, status (pass / FAIL / not run / flag), a
    one-line detail, the sentence a refusal or warning prints (``message``) and the numbers behind it."""

    name: str
    value: str
    allowed: str
    status: str
    detail: str = ""
    message: str = ""
    numbers: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The JSON-able record stored in the output (``checks`` attribute)."""
        return asdict(self)


@dataclass
class GateResult:
    """What ``check_input`` returns: the (D, L) whitened window the flow expects and the check records."""

    window: np.ndarray
    checks: list[Check]

    @property
    def failed(self) -> list[Check]:
        """The checks with status FAIL."""
        return [c for c in self.checks if c.status == FAIL]


def expected_detectors(spec: dict) -> list[str]:
    """Detector order of the model's data spec; [] for "+"-polarisation datasets (one unnamed channel)."""
    detectors = list(spec.get("detectors") or [])
    return [] if detectors == [PLUS_POLARISATION] else detectors


def check_finite(data: np.ndarray, files: list[str]) -> None:
    """A one-line InputError at the first NaN or inf."""
    bad = ~np.isfinite(data)
    if bad.any():
        channel, index = (int(i[0]) for i in np.nonzero(bad))
        raise InputError(
            f"{', '.join(files)}: NaN or inf at sample {index} of channel {channel}; strain must be finite"
        )


def order_channels(strain: StrainInput, wanted: list[str]) -> np.ndarray:
    """The strain's channels in the model's detector order, or a one-line InputError."""
    channels = channel_count(wanted)
    if strain.data.shape[0] != channels:
        expect = f"{channels} ({', '.join(wanted)})" if wanted else "1 (the '+' polarisation)"
        raise InputError(f"{', '.join(strain.files)}: {strain.data.shape[0]} channel(s); the model expects {expect}")
    if not wanted or strain.detectors is None:
        return strain.data
    if sorted(strain.detectors) != sorted(wanted):
        raise InputError(f"detectors {', '.join(strain.detectors)}; the model expects {', '.join(wanted)}")
    return strain.data[[strain.detectors.index(d) for d in wanted]]


def whiten(data: np.ndarray, sample_rate: float, spec: dict) -> np.ndarray:
    """Raw strain (D, L) -> whitened with the model's PSD in gwpe's convention
    (x = irfft(dt rfft(d) / sqrt(S_n)) sqrt(2 / dt), after a Tukey window with 0.1 s tapers)."""
    from scipy.signal.windows import tukey

    from gwpe.waveforms.strain import psd_on
    from gwpe.waveforms.whitening import whiten_frequency_series

    n = data.shape[-1]
    dt = 1.0 / sample_rate
    taper = tukey(n, alpha=min(1.0, 2 * 0.1 / (n * dt)))
    h_tilde = dt * np.fft.rfft(data * taper, axis=-1)
    values = psd_on(
        np.fft.rfftfreq(n, dt), float(spec["f_min"]), spec["psd"], spec.get("psd_table"), expected_detectors(spec)
    )
    return whiten_frequency_series(h_tilde, values, dt, n)


def decimation_factor(file_rate: float, model_rate: float, raw: bool) -> int:
    """k = file_rate / model_rate when it is a whole number (1: no resampling), else a one-line InputError; a
    factor above 1 only for raw strain (``--whiten``), since whitened samples have unit variance at their own rate."""
    ratio = file_rate / model_rate
    factor = int(round(ratio))
    if factor < 1 or abs(ratio - factor) > 1e-9 * ratio:
        raise InputError(
            f"sample rate {file_rate:g} Hz; allowed: the model's {model_rate:g} Hz or an integer multiple of it "
            "(raw strain is then decimated with an anti-aliasing filter)"
        )
    if factor > 1 and not raw:
        raise InputError(
            f"sample rate {file_rate:g} Hz for whitened strain; the model expects {model_rate:g} Hz: pass the raw "
            "strain with --whiten (it is decimated, then whitened at the model's rate)"
        )
    return factor


def _labels(spec: dict, channels: int) -> list[str]:
    detectors = expected_detectors(spec)
    return detectors if len(detectors) == channels else (["+"] if channels == 1 else [str(i) for i in range(channels)])


def _range(bounds: tuple[float, float], unit: str = "") -> str:
    return f"{bounds[0]:g}-{bounds[1]:g}{unit}"


def off_source_pieces(total: int, first: int | None, n: int, rate: float) -> list[tuple[int, int]]:
    """Contiguous [lo, hi) sample ranges of off-source data: the input without its ``EDGE`` ends and without the
    window [first, first + n) +- ``OFF_SOURCE_MARGIN``; pieces shorter than one Welch segment are dropped."""
    if first is None:
        return []
    edge, margin, segment = (int(round(s * rate)) for s in (EDGE, OFF_SOURCE_MARGIN, WELCH_SEGMENT))
    pieces = [(edge, first - margin), (first + n + margin, total - edge)]
    return [(lo, hi) for lo, hi in pieces if hi - lo >= segment]


def _segments(length: int, segment: int) -> int:
    return 1 + (length - segment) // (segment // 2)


def whitened_psd_ratio(white: np.ndarray, pieces: list[tuple[int, int]], rate: float) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies, (D, F) R(f)): Welch median PSD of whitened data over the off-source ``pieces`` divided by
    2 / rate, the one-sided PSD of unit-variance white noise (module doc, check 2)."""
    from scipy.signal import welch

    segment = int(round(WELCH_SEGMENT * rate))
    total, weight = 0.0, 0
    for lo, hi in pieces:
        frequencies, estimate = welch(
            white[:, lo:hi],
            fs=rate,
            window="hann",
            nperseg=segment,
            noverlap=segment // 2,
            average="median",
            axis=-1,
        )
        k = _segments(hi - lo, segment)
        total, weight = total + k * estimate, weight + k
    return frequencies, total / weight / (2.0 / rate)


def psd_check(white: np.ndarray, pieces: list[tuple[int, int]], spec: dict, raw: bool, labels: list[str]) -> Check:
    """Check 2 (module doc): the off-source PSD against the model's over [f_min, 0.9 Nyquist]."""
    rate, f_min = float(spec["sample_rate"]), float(spec["f_min"])
    f_max = BAND_TOP * rate / 2
    band_text = f"{f_min:g}-{f_max:.0f} Hz"
    allowed = f"{_range(PSD_RATIO, 'x')} over {band_text}; each octave {_range(OCTAVE_RATIO, 'x')}"
    frequencies, ratio = whitened_psd_ratio(white, pieces, rate)
    band = (frequencies >= f_min) & (frequencies <= f_max)
    medians = np.median(ratio[:, band], axis=1)
    octaves, low = [], f_min
    while low < f_max:
        high = min(2 * low, f_max)
        inside = (frequencies >= low) & (frequencies < high if high < f_max else frequencies <= high)
        if inside.sum() >= 8:
            octaves.append((low, high, np.median(ratio[:, inside], axis=1)))
        low = 2 * low
    reference = f"the model's {spec['psd']}" if raw else "unit-variance white noise (2/sample_rate)"
    problems = []  # (label, ratio, band): the band median out of range, else an octave's
    for d, label in enumerate(labels):
        if not PSD_RATIO[0] <= medians[d] <= PSD_RATIO[1]:
            problems.append((label, medians[d], band_text))
            continue
        problems += [
            (label, v[d], f"{lo:g}-{hi:.0f} Hz")
            for lo, hi, v in octaves
            if not OCTAVE_RATIO[0] <= v[d] <= OCTAVE_RATIO[1]
        ]
    said = ""
    if problems:
        label, ratio, where = problems[0]
        said = f"{label} off-source PSD is {ratio:.3g}x {reference} over {where}" + "".join(
            f", {lab} {r:.3g}x" + ("" if w == where else f" over {w}") for lab, r, w in problems[1:]
        )
    worst = [
        max(((lo, hi, v[d]) for lo, hi, v in octaves), key=lambda o: abs(np.log(o[2])), default=None)
        for d in range(len(labels))
    ]
    detail = "; ".join(
        f"{label}: worst octave {w[0]:g}-{w[1]:.0f} Hz {w[2]:.3g}x" for label, w in zip(labels, worst) if w
    )
    seconds = sum(hi - lo for lo, hi in pieces) / rate
    return Check(
        "noise PSD",
        ", ".join(f"{label} {m:.3g}x" for label, m in zip(labels, medians)),
        allowed,
        FAIL if problems else PASS,
        f"median S_data/S_model, {seconds:.1f} s off-source (Welch median, 1-s Hann, 50 %); {detail}",
        f"noise check failed: PSD mismatch: {said} (allowed {_range(PSD_RATIO, 'x')}, each octave "
        f"{_range(OCTAVE_RATIO, 'x')})"
        if problems
        else "",
        {
            "median_ratio": dict(zip(labels, medians.tolist())),
            "octaves": [[lo, hi, dict(zip(labels, v.tolist()))] for lo, hi, v in octaves],
            "off_source_seconds": seconds,
        },
    )


def whiteness_checks(white: np.ndarray, pieces: list[tuple[int, int]], labels: list[str]) -> list[Check]:
    """Check 3 (module doc): variance and excess kurtosis of the whitened off-source samples per channel."""
    from scipy.stats import kurtosis

    samples = np.concatenate([white[:, lo:hi] for lo, hi in pieces], axis=-1)
    variance = samples.var(axis=-1)
    excess = kurtosis(samples, axis=-1, fisher=True)
    bad_variance = [f"{lab} {v:.3g}" for lab, v in zip(labels, variance) if not VARIANCE[0] <= v <= VARIANCE[1]]
    bad_kurtosis = [f"{lab} {k:.3g}" for lab, k in zip(labels, excess) if not abs(k) <= KURTOSIS]
    count = f"{samples.shape[-1]} off-source samples per channel"
    return [
        Check(
            "noise variance",
            ", ".join(f"{lab} {v:.3g}" for lab, v in zip(labels, variance)),
            _range(VARIANCE),
            FAIL if bad_variance else PASS,
            f"variance of the whitened off-source data (unit-variance noise: ~1); {count}",
            (
                f"noise check failed: whitened off-source variance {', '.join(bad_variance)}; allowed "
                f"{_range(VARIANCE)} (the data's noise is not the model's PSD)"
            )
            if bad_variance
            else "",
            {"variance": dict(zip(labels, variance.tolist()))},
        ),
        Check(
            "noise normality",
            ", ".join(f"{lab} {k:.3g}" for lab, k in zip(labels, excess)),
            f"|excess kurtosis| <= {KURTOSIS:g}",
            FAIL if bad_kurtosis else PASS,
            f"excess kurtosis of the whitened off-source data (Gaussian: 0 +- {np.sqrt(24 / samples.shape[-1]):.2g});"
            f" {count}",
            (
                f"noise check failed: whitened off-source noise is not Gaussian: excess kurtosis "
                f"{', '.join(bad_kurtosis)}; allowed |k| <= {KURTOSIS:g} (glitches or spectral lines)"
            )
            if bad_kurtosis
            else "",
            {"excess_kurtosis": dict(zip(labels, excess.tolist()))},
        ),
    ]


def check_input(strain: StrainInput, spec: dict, start: float | None = None, whiten_raw: bool = False) -> GateResult:
    """The data checks (module doc, 1-4) of ``strain`` against a flow package's ``data_spec``: the (D, L)
    whitened window the flow expects and the records. Structural problems (no or a wrong sample rate, channels,
    NaN, the window outside the data, the wrong length, unwhitened strain) raise a one-line ``InputError``;
    failed data-quality checks are only recorded (``enforce`` refuses or forces)."""
    rate, duration = float(spec["sample_rate"]), float(spec["duration"])
    n = int(round(rate * duration))
    strain_config_of(spec)  # a damaged package's spec fails here, before the model runs
    if strain.sample_rate is None:
        raise InputError(
            f"{', '.join(strain.files)}: no sample rate in the file; pass --sample-rate (the model expects {rate:g} Hz)"
        )
    factor = decimation_factor(strain.sample_rate, rate, whiten_raw)
    data = order_channels(strain, expected_detectors(spec))
    check_finite(data, strain.files)
    checks = [
        Check(
            "sample rate",
            f"{strain.sample_rate:g} Hz",
            f"{rate:g} Hz x k (k > 1: raw strain)",
            PASS,
            f"resampled {strain.sample_rate:g} Hz -> {rate:g} Hz (anti-aliasing FIR, decimation by {factor})"
            if factor > 1
            else "the model's rate",
            numbers={"input": float(strain.sample_rate), "model": rate, "decimation": factor},
        )
    ]
    if factor > 1:
        from scipy.signal import resample_poly

        data = resample_poly(data, 1, factor, axis=-1)
    white = whiten(data, rate, spec) if whiten_raw else data
    first = None
    if start is not None:
        offset = start - (strain.start_time or 0.0)
        first = int(round(offset * rate))
        if first < 0 or first + n > white.shape[-1]:
            span = f"[{strain.start_time or 0.0:.3f}, {(strain.start_time or 0.0) + white.shape[-1] / rate:.3f}]"
            raise InputError(f"--start {start} with duration {duration:g} s lies outside the data {span}")
        window = white[:, first : first + n]
    elif white.shape[-1] != n:
        raise InputError(
            f"{white.shape[-1]} samples ({white.shape[-1] / rate:g} s); the model expects {n} ({duration:g} s at "
            f"{rate:g} Hz): pass --start GPS to cut a window"
        )
    else:
        window = white
    rms = float(np.sqrt(np.mean(window**2)))
    if not whiten_raw and rms < UNWHITENED_RMS:
        raise InputError(f"strain RMS {rms:.3g} looks unwhitened (whitened noise has RMS 1); pass --whiten")

    labels = _labels(spec, white.shape[0])
    pieces = off_source_pieces(white.shape[-1], first, n, rate)
    segment = int(round(WELCH_SEGMENT * rate))
    found = sum(_segments(hi - lo, segment) for lo, hi in pieces)
    if found >= MIN_SEGMENTS:
        checks.append(psd_check(white, pieces, spec, whiten_raw, labels))
        checks.extend(whiteness_checks(white, pieces, labels))
    else:
        seconds = sum(hi - lo for lo, hi in pieces) / rate
        why = (
            "the input holds only the model's window (no off-source data)"
            if first is None or white.shape[-1] == n
            else f"{seconds:.1f} s of off-source data ({found} Welch segments; needed {MIN_SEGMENTS}: about "
            f"{(MIN_SEGMENTS + 1) * WELCH_SEGMENT / 2 + 2 * (EDGE + OFF_SOURCE_MARGIN):g} s beyond the window)"
        )
        for name, allowed in (
            ("noise PSD", f"{_range(PSD_RATIO, 'x')} of the model's"),
            ("noise variance", _range(VARIANCE)),
            ("noise normality", f"|excess kurtosis| <= {KURTOSIS:g}"),
        ):
            checks.append(Check(name, "-", allowed, NOT_RUN, why))
    ok = bool(WHITENED_RMS[0] < rms < WHITENED_RMS[1])
    if whiten_raw:
        checks.append(
            Check(
                "on-source RMS",
                f"{rms:.3g}",
                _range(WHITENED_RMS),
                PASS if ok else FAIL,
                "RMS of the whitened window (unit-variance noise plus a signal)",
                ""
                if ok
                else (
                    f"noise check failed: whitened strain has RMS {rms:.3g}; allowed {_range(WHITENED_RMS)} (the "
                    f"data's noise is not the model's PSD {spec['psd']}, so its posterior would be mis-scaled)"
                ),
                {"rms": rms},
            )
        )
    else:  # whitened by the user: a scale error (x100, x0.01, garbage values) would mis-scale every posterior
        checks.append(
            Check(
                "on-source RMS",
                f"{rms:.3g}",
                _range(WHITENED_RMS),
                PASS if ok else FAIL,
                "RMS of the input window (already whitened: unit-variance noise plus a signal)",
                ""
                if ok
                else (
                    f"noise check failed: the whitened input has RMS {rms:.3g}; allowed {_range(WHITENED_RMS)} "
                    f"(whitened noise has RMS 1: the strain is mis-scaled, or raw strain that needs --whiten, or "
                    f"whitened twice)"
                ),
                {"rms": rms},
            )
        )
    return GateResult(window, checks)


def prior_of(spec: dict):
    """The ``StrainPriorConfig`` a package's data spec records (None when it records none), taken as written
    (``gwpe.data.strain_store.recorded_prior``: what the training data were drawn from)."""
    from gwpe.data.strain_store import recorded_prior

    return None if "prior" not in spec else recorded_prior(spec)


def strain_config_of(spec: dict):
    """The ``StrainConfig`` a package's data spec describes (approximant, PSD, f_min, f_ref, reference GPS), or a
    one-line ``PackageError`` naming the bad field, its value and what is allowed (a hand-edited or damaged
    ``config.json``): checked before the model runs, not after sampling."""
    from pydantic import ValidationError

    from gwpe.config import StrainConfig
    from gwpe.errors import PackageError

    try:
        return StrainConfig(
            approximant=spec.get("approximant", "IMRPhenomPv2"),
            **({} if spec.get("psd_table") else {"psd": spec["psd"]}),  # a measured table replaces the design name
            f_min=float(spec["f_min"]),
            f_ref=float(spec.get("f_ref", spec["f_min"])),
            reference_gps=float(spec.get("reference_gps", 1126259462.0)),
        )
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise PackageError(f"package config.json data_spec.{field} = {first.get('input')!r}: {first['msg']}") from None
    except (KeyError, TypeError, ValueError) as error:
        raise PackageError(f"package config.json data_spec is incomplete or malformed ({error})") from None


def generator_of(spec: dict):
    """A ``StrainGenerator`` of the model's data spec (the same setup, pad and long segment as its training set)."""
    from gwpe.config import StrainDatasetConfig
    from gwpe.waveforms.strain import StrainGenerator, StrainSetup

    prior = prior_of(spec)
    inferred = list(spec.get("inferred") or [])
    strain = strain_config_of(spec)
    dataset = StrainDatasetConfig(
        parameters=list(dict.fromkeys(["m1", "m2", *inferred])),
        detectors=expected_detectors(spec),
        n_signals=2,
        sample_rate=float(spec["sample_rate"]),
        duration=float(spec["duration"]),
        **({} if prior is None else {"prior": prior}),
    )
    return StrainGenerator(StrainSetup.build(strain, dataset, spec.get("psd_table")))


def snr_check(samples: np.ndarray, parameters: list[str], spec: dict, training_snr: dict | None) -> Check:
    """Check 5 (module doc): optimal network SNR of the template at the posterior median against the training
    set's SNR range."""
    from gwpe.waveforms.priors import log_prior_density
    from gwpe.waveforms.strain import as_theta, format_theta

    name = "signal SNR"
    if not training_snr:
        return Check(
            name,
            "-",
            f"[p01/{SNR_FACTOR:g}, max x {SNR_FACTOR:g}] of the training set",
            NOT_RUN,
            "the package records no training_snr (saved before gwpe recorded it)",
        )
    low = float(training_snr.get("p01", training_snr.get("min"))) / SNR_FACTOR
    high = float(training_snr["max"]) * SNR_FACTOR
    allowed = f"{low:.3g}-{high:.3g}"
    training = ", ".join(f"{k} {float(v):.3g}" for k, v in training_snr.items())
    median = np.median(samples, axis=0)
    theta = as_theta(parameters, median)
    prior = prior_of(spec)
    if prior is not None and not np.isfinite(log_prior_density(prior, parameters, median[None])[0]):
        return Check(
            name,
            "-",
            allowed,
            FAIL,
            f"posterior median {format_theta(theta)} outside the prior",
            f"signal check failed: the posterior median {format_theta(theta)} lies outside the model's prior",
            {"median": dict(zip(parameters, median.tolist()))},
        )
    template, snr = generator_of(spec).whitened(theta)
    in_window = float(np.sqrt(np.sum(template**2)))
    ok = low <= snr <= high
    return Check(
        name,
        f"{snr:.3g}",
        allowed,
        PASS if ok else FAIL,
        f"template at the posterior median (in-window {in_window:.3g}); training set: {training}",
        ""
        if ok
        else (
            f"signal check failed: optimal SNR {snr:.3g} of the template at the posterior median is outside "
            f"{allowed} (the training set's p01 / {SNR_FACTOR:g} to max x {SNR_FACTOR:g}; {training})"
        ),
        {"snr": snr, "in_window": in_window, "median": dict(zip(parameters, median.tolist()))},
    )


def piling_check(samples: np.ndarray, parameters: list[str], spec: dict) -> Check:
    """Check 6 (module doc): posterior mass piled in the outer 1 % of a prior range (a flag, not a failure)."""
    from gwpe.waveforms.priors import prior_bounds

    name, allowed = "prior bounds", f"<= {PILE_FRACTION:.0%} in the outer {PILE_EDGE:.0%} at each end"
    prior = prior_of(spec)
    if prior is None:
        return Check(name, "-", allowed, NOT_RUN, "the package records no prior")
    units = spec.get("units", {})
    fractions, flagged = {}, []
    for j, parameter in enumerate(parameters):
        if parameter in PERIODIC:
            continue
        try:
            lo, hi = prior_bounds(prior, parameter)
        except ValueError:
            continue
        width = hi - lo
        column = samples[:, j]
        ends = {
            "lower": float(np.mean(column <= lo + PILE_EDGE * width)),
            "upper": float(np.mean(column >= hi - PILE_EDGE * width)),
        }
        fractions[parameter] = ends
        for end, fraction in ends.items():
            if fraction > PILE_FRACTION:
                unit = f" {units.get(parameter, '')}".rstrip()
                flagged.append(f"{parameter} {fraction:.0%} at the {end} bound of [{lo:g}, {hi:g}]{unit}")
    worst = max(((p, e, f) for p, ends in fractions.items() for e, f in ends.items()), key=lambda x: x[2], default=None)
    return Check(
        name,
        "-" if worst is None else f"{worst[2]:.1%} ({worst[0]} {worst[1]})",
        allowed,
        FLAG if flagged else PASS,
        "; ".join(flagged) if flagged else "no parameter piled against its prior bounds",
        f"posterior piled against a prior bound: {', '.join(flagged)} (the event may lie outside the model's prior)"
        if flagged
        else "",
        {"fractions": fractions, "flagged": flagged},
    )


def support_check(samples: np.ndarray, parameters: list[str], spec: dict) -> Check:
    """Check 7: the samples inside the prior's support (zero prior density means the model extrapolated; a
    bounded parameterisation never does). Non-finite samples are refused outright (``InputError``, even with
    ``--force``): no file holding them is written."""
    from gwpe.waveforms.priors import log_prior_density

    bad = ~np.isfinite(samples).all(axis=1)
    if bad.any():
        raise InputError(
            f"the model returned {int(bad.sum())} non-finite samples of {len(samples)}; nothing written (the input "
            "is far from the training data, or the package is damaged)"
        )
    name, allowed = "prior support", "all samples inside the prior"
    prior = prior_of(spec)
    if prior is None:
        return Check(name, "-", allowed, NOT_RUN, "the package records no prior")
    outside = ~np.isfinite(log_prior_density(prior, parameters, samples))
    fraction = float(outside.mean())
    ok = fraction <= SUPPORT_TOLERANCE
    return Check(
        name,
        f"{fraction:.2%} outside",
        allowed,
        PASS if ok else FAIL,
        f"{int(outside.sum())} samples outside the prior (float32 rounding at a bound allowed up to "
        f"{SUPPORT_TOLERANCE:.1%})",
        ""
        if ok
        else f"posterior check failed: {fraction:.1%} of the samples lie outside the model's prior (it extrapolated)",
        {"outside": fraction},
    )


def check_posterior(
    samples: np.ndarray, parameters: list[str], spec: dict, training_snr: dict | None = None
) -> list[Check]:
    """The checks on the posterior samples (module doc, 5-7): finite and inside the prior, signal SNR and
    prior-bound piling."""
    return [
        support_check(samples, parameters, spec),
        snr_check(samples, parameters, spec, training_snr),
        piling_check(samples, parameters, spec),
    ]


def enforce(checks: list[Check], force: bool) -> list[str]:
    """Failed checks: unless ``force``, ONE-line ``InputError`` naming the first (and listing the others); with
    ``force``, their messages (to print as warnings and record in ``forced_checks``)."""
    failed = [c for c in checks if c.status == FAIL]
    if failed and not force:
        others = f"; also failed: {', '.join(c.name for c in failed[1:])}" if len(failed) > 1 else ""
        raise InputError(f"{failed[0].message}{others}; --force runs the model anyway and records the failure")
    return [c.message for c in failed]


def flags(checks: list[Check]) -> list[str]:
    """The warning messages of flagged checks (status ``flag``)."""
    return [c.message for c in checks if c.status == FLAG]


def format_checks(checks: list[Check]) -> str:
    """The table ``gwpe infer`` prints on stderr: check, value, allowed, status, detail."""
    rows = [("check", "value", "allowed", "status", "detail")] + [
        (c.name, c.value, c.allowed, c.status, c.detail) for c in checks
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in rows
    ).rstrip()


def checks_json(checks: list[Check]) -> str:
    """The records as a JSON list (the output file's ``checks`` attribute)."""
    return json.dumps([c.as_dict() for c in checks])
