//! The admin web console (`docs/console.md`): static assets embedded in the binary and served
//! at `/ui/` on every controller ([`assets`]), and the live usage feed behind its charts
//! ([`feed`]; its endpoint is `api::console`).
//!
//! The page itself is public (it holds no data); everything it shows comes from the `/v1` API
//! with the bearer token the user logs in with, so the console can show and do exactly what
//! that token's role allows and nothing more.

pub mod assets;
pub mod feed;

pub use assets::router;
pub use feed::{ChartPoint, FeedEvent, UsageFeed};
