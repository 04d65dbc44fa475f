//! WAL tests.
