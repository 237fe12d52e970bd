"""Bugs the fuzzer found that are reported but not fixed yet."""

# Bugs the fuzzer found that are reported but not fixed yet: the generator steers around
# each (search for its name). Delete an entry once fixed, and those programs come back.
KNOWN_BUGS: dict[str, str] = {}


def avoid(bug: str) -> bool:
    return bug in KNOWN_BUGS
