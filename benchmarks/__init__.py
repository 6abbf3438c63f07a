"""Side-by-side benchmarks: our layer against the raw library it wraps, in the same run."""
