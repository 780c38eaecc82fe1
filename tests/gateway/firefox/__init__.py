"""Debian's stock Firefox ESR, headless, driven over WebDriver BiDi (``test_firefox.py``)."""
