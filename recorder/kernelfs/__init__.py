"""Readers of kernel files. Parsers are pure functions of strings; readers take
their root folder as an argument so tests can point them at literal trees."""
