//! The `RateLimit` and `RateLimit-Policy` response headers (IETF ratelimit-headers draft).
//!
//! RunPod sends both on authenticated responses, for example
//! `RateLimit: "minute";r=0;t=12, "hour";r=2800;t=1812` and
//! `RateLimit-Policy: "minute";q=60;w=60, "hour";q=3000;w=3600`.

use std::time::Duration;

use http::HeaderMap;

/// What is left of one rate-limit window, from the `RateLimit` header.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitWindow {
    /// The window's name, such as `minute`, `hour` or `day`.
    pub name: String,
    /// Requests still allowed in this window (`r`).
    pub remaining: Option<u64>,
    /// Time until the window resets (`t`).
    pub reset_after: Option<Duration>,
}

/// One quota policy, from the `RateLimit-Policy` header.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitPolicy {
    /// The window's name, such as `minute`, `hour` or `day`.
    pub name: String,
    /// Requests allowed per window (`q`).
    pub quota: Option<u64>,
    /// The window's length (`w`).
    pub window: Option<Duration>,
}

/// The rate-limit state the API reported on one response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimit {
    /// Remaining quota per window; empty when the header was absent.
    pub windows: Vec<RateLimitWindow>,
    /// Quota policy per window; empty when the header was absent.
    pub policies: Vec<RateLimitPolicy>,
}

impl RateLimit {
    /// Reads both headers; returns `None` when neither is present. Malformed members are skipped.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let windows: Vec<RateLimitWindow> = header_str(headers, "ratelimit")
            .map(|value| {
                parse_items(value)
                    .into_iter()
                    .map(|(name, params)| RateLimitWindow {
                        name,
                        remaining: param(&params, "r"),
                        reset_after: param(&params, "t").map(Duration::from_secs),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let policies: Vec<RateLimitPolicy> = header_str(headers, "ratelimit-policy")
            .map(|value| {
                parse_items(value)
                    .into_iter()
                    .map(|(name, params)| RateLimitPolicy {
                        name,
                        quota: param(&params, "q"),
                        window: param(&params, "w").map(Duration::from_secs),
                    })
                    .collect()
            })
            .unwrap_or_default();
        if windows.is_empty() && policies.is_empty() {
            None
        } else {
            Some(Self { windows, policies })
        }
    }

    /// The window with the fewest remaining requests, if any window reports a count.
    pub fn tightest(&self) -> Option<&RateLimitWindow> {
        self.windows
            .iter()
            .filter(|window| window.remaining.is_some())
            .min_by_key(|window| window.remaining)
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn param(params: &[(String, String)], key: &str) -> Option<u64> {
    params
        .iter()
        .find(|(name, _)| name == key)
        .and_then(|(_, value)| value.parse().ok())
}

/// Parses a structured-field list such as `"minute";r=0;t=12, "hour";r=5` into names and
/// parameters. Only the subset the draft uses is understood: string or token items with integer
/// or token parameters.
fn parse_items(value: &str) -> Vec<(String, Vec<(String, String)>)> {
    value
        .split(',')
        .filter_map(|member| {
            let mut parts = member.split(';').map(str::trim);
            let name = parts.next()?.trim_matches('"').to_owned();
            if name.is_empty() {
                return None;
            }
            let params = parts
                .filter_map(|part| {
                    let (key, value) = part.split_once('=')?;
                    Some((
                        key.trim().to_owned(),
                        value.trim().trim_matches('"').to_owned(),
                    ))
                })
                .collect();
            Some((name, params))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn parses_runpod_example_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "ratelimit",
            HeaderValue::from_static(
                r#""minute";r=0;t=12, "hour";r=2800;t=1812, "day";r=49500;t=45012"#,
            ),
        );
        headers.insert(
            "ratelimit-policy",
            HeaderValue::from_static(
                r#""minute";q=60;w=60, "hour";q=3000;w=3600, "day";q=50000;w=86400"#,
            ),
        );
        let limit = RateLimit::from_headers(&headers).expect("headers present");
        assert_eq!(limit.windows.len(), 3);
        assert_eq!(limit.windows[1].name, "hour");
        assert_eq!(limit.windows[1].remaining, Some(2800));
        assert_eq!(
            limit.windows[1].reset_after,
            Some(Duration::from_secs(1812))
        );
        assert_eq!(limit.policies[2].quota, Some(50_000));
        assert_eq!(limit.policies[0].window, Some(Duration::from_secs(60)));
        assert_eq!(limit.tightest().map(|w| w.name.as_str()), Some("minute"));
    }

    #[test]
    fn absent_headers_give_none_and_garbage_is_skipped() {
        assert_eq!(RateLimit::from_headers(&HeaderMap::new()), None);
        let mut headers = HeaderMap::new();
        headers.insert(
            "ratelimit",
            HeaderValue::from_static(r#", ;;, "minute";r=x;t=5"#),
        );
        let limit = RateLimit::from_headers(&headers).expect("one member parses");
        assert_eq!(limit.windows.len(), 1);
        assert_eq!(limit.windows[0].remaining, None);
        assert_eq!(limit.windows[0].reset_after, Some(Duration::from_secs(5)));
    }
}
