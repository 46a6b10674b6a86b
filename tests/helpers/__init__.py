"""Helpers shared by tests (no tests here): imported as ``helpers.<module>`` (tests/ is on sys.path)."""
