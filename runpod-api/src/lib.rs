//! Typed async client for RunPod's REST API v2.

mod ratelimit;
mod retry;
mod sse;

pub use ratelimit::{RateLimit, RateLimitPolicy, RateLimitWindow};
pub use retry::RetryPolicy;
