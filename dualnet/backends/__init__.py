"""Code generation backends: each turns the typed IR into a framework's source code."""
