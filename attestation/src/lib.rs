//! Evidence formats (SEV-SNP, TDX, simulated), verification, authenticated usage reports,
//! Merkle log primitives. Knows nothing about Raft or gRPC.
