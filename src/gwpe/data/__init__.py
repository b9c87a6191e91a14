"""Chunked, resumable dataset stores and the data modules that read them."""
