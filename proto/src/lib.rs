//! Protocol buffers and generated tonic/prost code. No logic.
