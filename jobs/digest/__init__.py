"""The daily digest and the App Home overview: what was spent, where the month is heading, what
to do about it. Imports every other `jobs` package."""
