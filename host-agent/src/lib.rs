//! The host agent: enclave runtimes, collectors, enforcers, plans. Applies what the
//! controllers decide; decides nothing itself.
