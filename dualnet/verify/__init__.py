"""The verification tools: run, parity, gradcheck, the NumPy reference, the op matrix and
the differential fuzzer."""
