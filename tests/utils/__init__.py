"""Data builders shared by the tests."""
