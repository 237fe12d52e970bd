"""The PyTorch backend: generated modules depend only on torch and the standard library.

Nothing here imports torch: `lowering` and `runtime` only produce source text, so checking a
model never pays for importing torch.
"""
