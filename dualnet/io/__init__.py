"""Input and output: safe reading, atomic writes, weight files."""
