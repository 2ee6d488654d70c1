//! Black-box tests across processes live in tests/tests.
