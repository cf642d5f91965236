//! Request validation as RunPod's OpenAPI document states it: the shapes of the bodies and query
//! parameters the simulator serves, and a small checker that lists every violation with its
//! path. A schema violation is the real API's 422; rules the document leaves to the handler
//! (exactly one of `gpu` or `cpu`, say) are checked later and answered with 400.

use serde_json::{Map, Value};

/// The part of JSON Schema the REST v2 request shapes use.
#[derive(Debug, Clone)]
pub(super) enum Shape {
    Str {
        min_length: usize,
        pattern: Option<Pattern>,
    },
    Int {
        minimum: Option<i64>,
        maximum: Option<i64>,
    },
    Bool,
    Enum(&'static [&'static str]),
    Array {
        items: Box<Shape>,
        max_items: Option<usize>,
    },
    /// An object whose values are all strings (`env`).
    StringMap,
    /// A closed object (`additionalProperties`/`unevaluatedProperties: false`).
    Object {
        fields: Vec<Field>,
        min_properties: usize,
    },
    Nullable(Box<Shape>),
}

/// The string patterns of the document, written out rather than compiled from regexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pattern {
    /// `^\d+\.\d+$`
    CudaVersion,
    /// `^\d+(\.\d+)?$`
    CudaFloor,
    /// `^[A-Z]{2}$`
    CountryCode,
    /// `^(ssh|ecdsa|sk)-[^\s]+ [^\s]+([ \t][^\n\r]*)?$`
    PublicKey,
    /// `format: date-time` (RFC 3339).
    DateTime,
}

#[derive(Debug, Clone)]
pub(super) struct Field {
    name: &'static str,
    shape: Shape,
    required: bool,
}

fn digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit())
}

impl Pattern {
    fn matches(self, text: &str) -> bool {
        match self {
            Pattern::CudaVersion => text
                .split_once('.')
                .is_some_and(|(major, minor)| digits(major) && digits(minor)),
            Pattern::CudaFloor => match text.split_once('.') {
                Some((major, minor)) => digits(major) && digits(minor),
                None => digits(text),
            },
            Pattern::CountryCode => {
                text.len() == 2 && text.bytes().all(|byte| byte.is_ascii_uppercase())
            }
            Pattern::PublicKey => is_public_key_line(text),
            Pattern::DateTime => is_rfc3339(text),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Pattern::CudaVersion => "a major.minor version",
            Pattern::CudaFloor => "a version such as 12 or 12.1",
            Pattern::CountryCode => "a two-letter country code",
            Pattern::PublicKey => "an authorized_keys line",
            Pattern::DateTime => "an RFC 3339 date-time",
        }
    }
}

/// ECMA-262's `\s`, the regex dialect of JSON Schema (narrower than `char::is_whitespace`,
/// which also counts U+0085).
fn is_ecma_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\u{feff}'
    )
}

/// `^(ssh|ecdsa|sk)-[^\s]+ [^\s]+([ \t][^\n\r]*)?$`, written out.
fn is_public_key_line(text: &str) -> bool {
    let Some(rest) = ["ssh-", "ecdsa-", "sk-"]
        .iter()
        .find_map(|prefix| text.strip_prefix(prefix))
    else {
        return false;
    };
    let token = |text: &str| -> (usize, Option<char>) {
        let end = text.find(is_ecma_space).unwrap_or(text.len());
        (end, text[end..].chars().next())
    };
    let (kind_end, separator) = token(rest);
    if kind_end == 0 || separator != Some(' ') {
        return false;
    }
    let key = &rest[kind_end + 1..];
    let (key_end, after) = token(key);
    match after {
        _ if key_end == 0 => false,
        None => true,
        Some(' ' | '\t') => !key[key_end + 1..].contains(['\n', '\r']),
        Some(_) => false,
    }
}

/// RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
pub(super) fn is_rfc3339(text: &str) -> bool {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(range)?;
        digits(part).then(|| part.parse().ok())?
    };
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[13] != b':' {
        return false;
    }
    if !matches!(bytes[10], b'T' | b't') || bytes[16] != b':' {
        return false;
    }
    let (Some(year), Some(month), Some(day)) = (number(0..4), number(5..7), number(8..10)) else {
        return false;
    };
    let (Some(hour), Some(minute), Some(second)) = (number(11..13), number(14..16), number(17..19))
    else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if day == 0 || day > days || hour > 23 || minute > 59 || second > 60 {
        return false;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(fraction.len());
        if end == 0 {
            return false;
        }
        rest = &fraction[end..];
    }
    match rest {
        "Z" | "z" => true,
        offset => {
            let offset_bytes = offset.as_bytes();
            offset_bytes.len() == 6
                && matches!(offset_bytes[0], b'+' | b'-')
                && offset_bytes[3] == b':'
                && offset
                    .get(1..3)
                    .filter(|hours| digits(hours))
                    .is_some_and(|hours| hours < "24")
                && offset
                    .get(4..6)
                    .filter(|minutes| digits(minutes))
                    .is_some_and(|minutes| minutes < "60")
        }
    }
}

/// A JSON number that is an integer in JSON Schema's sense (`481` or `481.0`), as i128.
fn integral(value: &Value) -> Option<i128> {
    if let Some(int) = value.as_i64() {
        return Some(i128::from(int));
    }
    if let Some(int) = value.as_u64() {
        return Some(i128::from(int));
    }
    let float = value.as_f64()?;
    #[expect(
        clippy::cast_possible_truncation,
        reason = "only integral floats within i128 reach the cast"
    )]
    (float.fract() == 0.0 && float.abs() < 1e38).then_some(float as i128)
}

fn type_name(shape: &Shape) -> &'static str {
    match shape {
        Shape::Str { .. } | Shape::Enum(_) => "a string",
        Shape::Int { .. } => "an integer",
        Shape::Bool => "a boolean",
        Shape::Array { .. } => "an array",
        Shape::StringMap | Shape::Object { .. } => "an object",
        Shape::Nullable(inner) => type_name(inner),
    }
}

fn label(path: &str) -> &str {
    if path.is_empty() { "body" } else { path }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// Appends every way `value` breaks `shape` to `errors`, each naming its path.
pub(super) fn check(value: &Value, shape: &Shape, path: &str, errors: &mut Vec<String>) {
    let wrong_type = |errors: &mut Vec<String>| {
        errors.push(format!("{}: must be {}", label(path), type_name(shape)));
    };
    match shape {
        Shape::Nullable(inner) => {
            if !value.is_null() {
                check(value, inner, path, errors);
            }
        }
        Shape::Str {
            min_length,
            pattern,
        } => match value.as_str() {
            None => wrong_type(errors),
            Some(text) => {
                if text.chars().count() < *min_length {
                    errors.push(format!(
                        "{}: must have at least {min_length} characters",
                        label(path)
                    ));
                }
                if let Some(pattern) = pattern
                    && !pattern.matches(text)
                {
                    errors.push(format!("{}: must be {}", label(path), pattern.describe()));
                }
            }
        },
        Shape::Int { minimum, maximum } => match integral(value) {
            None => wrong_type(errors),
            Some(int) => {
                if let Some(minimum) = minimum
                    && int < i128::from(*minimum)
                {
                    errors.push(format!("{}: must be >= {minimum}", label(path)));
                }
                if let Some(maximum) = maximum
                    && int > i128::from(*maximum)
                {
                    errors.push(format!("{}: must be <= {maximum}", label(path)));
                }
            }
        },
        Shape::Bool => {
            if !value.is_boolean() {
                wrong_type(errors);
            }
        }
        Shape::Enum(allowed) => match value.as_str() {
            Some(text) if allowed.contains(&text) => {}
            _ => errors.push(format!(
                "{}: must be one of {}",
                label(path),
                allowed.join(", ")
            )),
        },
        Shape::Array { items, max_items } => match value.as_array() {
            None => wrong_type(errors),
            Some(array) => {
                if let Some(max_items) = max_items
                    && array.len() > *max_items
                {
                    errors.push(format!(
                        "{}: must have at most {max_items} items",
                        label(path)
                    ));
                }
                for (index, item) in array.iter().enumerate() {
                    check(item, items, &format!("{path}[{index}]"), errors);
                }
            }
        },
        Shape::StringMap => match value.as_object() {
            None => wrong_type(errors),
            Some(object) => {
                for (key, item) in object {
                    if !item.is_string() {
                        errors.push(format!("{}: must be a string", join(path, key)));
                    }
                }
            }
        },
        Shape::Object {
            fields,
            min_properties,
        } => match value.as_object() {
            None => wrong_type(errors),
            Some(object) => check_object(object, fields, *min_properties, path, errors),
        },
    }
}

fn check_object(
    object: &Map<String, Value>,
    fields: &[Field],
    min_properties: usize,
    path: &str,
    errors: &mut Vec<String>,
) {
    if object.len() < min_properties {
        errors.push(format!(
            "{}: must have at least {min_properties} properties",
            label(path)
        ));
    }
    for field in fields {
        match object.get(field.name) {
            Some(item) => check(item, &field.shape, &join(path, field.name), errors),
            None if field.required => {
                errors.push(format!("{}: required", join(path, field.name)));
            }
            None => {}
        }
    }
    for key in object.keys() {
        if !fields.iter().any(|field| field.name == key) {
            errors.push(format!(
                "{}: additional property not allowed",
                join(path, key)
            ));
        }
    }
}

/// Checks one query parameter's raw text against its shape; arrays are comma-separated
/// (`style: form, explode: false`).
pub(super) fn check_query(raw: &str, shape: &Shape, name: &str, errors: &mut Vec<String>) {
    let value = query_value(raw, shape);
    check(&value, shape, name, errors);
}

fn query_value(raw: &str, shape: &Shape) -> Value {
    match shape {
        Shape::Bool => match raw {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            other => Value::String(other.to_owned()),
        },
        Shape::Int { .. } => {
            let digits_only = digits(raw.strip_prefix('-').unwrap_or(raw));
            match (raw.parse::<i64>(), raw.parse::<f64>()) {
                (Ok(int), _) => Value::from(int),
                // Beyond i64 but still an integer: keep it a number so bounds apply.
                (Err(_), Ok(float)) if digits_only => Value::from(float),
                _ => Value::String(raw.to_owned()),
            }
        }
        // `include=` is an empty list.
        Shape::Array { .. } if raw.is_empty() => Value::Array(Vec::new()),
        Shape::Array { items, .. } => Value::Array(
            raw.split(',')
                .map(|item| query_value(item, items))
                .collect(),
        ),
        Shape::Nullable(inner) => query_value(raw, inner),
        _ => Value::String(raw.to_owned()),
    }
}

/// Rewrites integral floats (`481.0`) as integers, so typed parsing after validation sees what
/// JSON Schema saw: the same integer.
pub(super) fn normalize_integers(value: &mut Value) {
    match value {
        Value::Number(number) if number.is_f64() => {
            if let Some(int) = integral(value).and_then(|int| i64::try_from(int).ok()) {
                *value = Value::from(int);
            } else if let Some(int) = integral(value).and_then(|int| u64::try_from(int).ok()) {
                *value = Value::from(int);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_integers),
        Value::Object(object) => object.values_mut().for_each(normalize_integers),
        _ => {}
    }
}

// The document's shapes, one function each.

fn string() -> Shape {
    Shape::Str {
        min_length: 0,
        pattern: None,
    }
}

fn non_empty() -> Shape {
    Shape::Str {
        min_length: 1,
        pattern: None,
    }
}

fn patterned(pattern: Pattern) -> Shape {
    Shape::Str {
        min_length: 0,
        pattern: Some(pattern),
    }
}

fn int(minimum: Option<i64>, maximum: Option<i64>) -> Shape {
    Shape::Int { minimum, maximum }
}

fn array(items: Shape) -> Shape {
    Shape::Array {
        items: Box::new(items),
        max_items: None,
    }
}

fn optional(name: &'static str, shape: Shape) -> Field {
    Field {
        name,
        shape,
        required: false,
    }
}

fn required(name: &'static str, shape: Shape) -> Field {
    Field {
        name,
        shape,
        required: true,
    }
}

fn object(fields: Vec<Field>) -> Shape {
    Shape::Object {
        fields,
        min_properties: 0,
    }
}

const CLOUDS: &[&str] = &["SECURE", "COMMUNITY"];
const TEMPLATE_CATEGORIES: &[&str] = &["CPU", "NVIDIA", "AMD"];
pub(super) const VOLUME_TYPES: &[&str] = &["STANDARD", "HIGH_PERFORMANCE"];
const POD_ACTIONS: &[&str] = &["start", "stop", "restart", "terminate"];

/// `ContainerConfig`: the container settings pods and templates share.
fn container_fields() -> Vec<Field> {
    vec![
        optional("args", string()),
        optional("disk", int(Some(1), None)),
        optional("env", Shape::StringMap),
        optional("image", string()),
        optional("ports", array(string())),
        optional("registry", Shape::Nullable(Box::new(string()))),
    ]
}

fn persistent_mount() -> Shape {
    object(vec![
        required("size", int(Some(10), None)),
        required("path", string()),
    ])
}

fn mounts() -> Shape {
    object(vec![
        optional("persistent", persistent_mount()),
        optional(
            "network",
            Shape::Array {
                items: Box::new(object(vec![
                    required("volumeId", string()),
                    required("path", string()),
                ])),
                max_items: Some(1),
            },
        ),
    ])
}

/// `CreatePodRequest`; `image` is required unless `templateId` is set (checked by the caller,
/// as the document's `if`/`then`).
pub(super) fn create_pod() -> Shape {
    let mut fields = container_fields();
    fields.extend([
        required("name", non_empty()),
        optional("cloud", Shape::Enum(CLOUDS)),
        optional(
            "cpu",
            object(vec![
                required("id", non_empty()),
                required("vcpuCount", int(Some(2), None)),
            ]),
        ),
        optional("dataCenterIds", array(string())),
        optional("globalNetworking", Shape::Bool),
        optional(
            "gpu",
            object(vec![
                required("id", string()),
                optional("count", int(Some(1), None)),
                optional(
                    "allowedCudaVersions",
                    array(patterned(Pattern::CudaVersion)),
                ),
                optional("minCudaVersion", patterned(Pattern::CudaVersion)),
            ]),
        ),
        optional("mounts", mounts()),
        optional("startJupyter", Shape::Bool),
        optional("startSsh", Shape::Bool),
        optional("templateId", non_empty()),
    ]);
    object(fields)
}

/// `UpdatePodRequest`.
pub(super) fn update_pod() -> Shape {
    let mut fields = container_fields();
    fields.extend([
        optional("globalNetworking", Shape::Bool),
        optional("locked", Shape::Bool),
        optional("mounts", mounts()),
        optional("name", non_empty()),
        optional("templateId", string()),
    ]);
    object(fields)
}

/// `PodActionRequest`.
pub(super) fn pod_action() -> Shape {
    object(vec![required("action", Shape::Enum(POD_ACTIONS))])
}

/// `UpdateSshKeysRequest`.
pub(super) fn ssh_keys() -> Shape {
    object(vec![required("keys", array(patterned(Pattern::PublicKey)))])
}

/// `CreateNetworkVolumeRequest`.
pub(super) fn create_volume() -> Shape {
    object(vec![
        required("dataCenter", non_empty()),
        required("name", non_empty()),
        required("size", int(Some(10), Some(4096))),
        optional("type", Shape::Enum(VOLUME_TYPES)),
    ])
}

/// `UpdateNetworkVolumeRequest`: at least one field.
pub(super) fn update_volume() -> Shape {
    Shape::Object {
        fields: vec![
            optional("name", non_empty()),
            optional("size", int(Some(10), Some(4096))),
        ],
        min_properties: 1,
    }
}

fn template_fields(create: bool) -> Vec<Field> {
    let mut fields = container_fields();
    fields.extend([
        Field {
            name: "name",
            shape: non_empty(),
            required: create,
        },
        optional(
            "allowedCudaVersions",
            array(patterned(Pattern::CudaVersion)),
        ),
        optional("category", Shape::Enum(TEMPLATE_CATEGORIES)),
        optional(
            "mounts",
            object(vec![optional("persistent", persistent_mount())]),
        ),
        optional("public", Shape::Bool),
        optional("serverless", Shape::Bool),
        optional("startJupyter", Shape::Bool),
        optional("startSsh", Shape::Bool),
    ]);
    if create && let Some(image) = fields.iter_mut().find(|field| field.name == "image") {
        image.required = true;
    }
    fields
}

/// `CreateTemplateRequest`.
pub(super) fn create_template() -> Shape {
    object(template_fields(true))
}

/// `UpdateTemplateRequest`.
pub(super) fn update_template() -> Shape {
    object(template_fields(false))
}

/// Query parameters, by operation.
pub(super) fn list_pods_query() -> Vec<(&'static str, Shape)> {
    vec![("includeClusterPods", Shape::Bool)]
}

pub(super) fn logs_query() -> Vec<(&'static str, Shape)> {
    vec![
        ("source", Shape::Enum(&["container", "system"])),
        ("tail", int(Some(0), Some(5000))),
        ("since", patterned(Pattern::DateTime)),
    ]
}

pub(super) fn gpu_catalog_query() -> Vec<(&'static str, Shape)> {
    vec![
        (
            "include",
            Shape::Array {
                items: Box::new(Shape::Enum(&["AVAILABILITY"])),
                max_items: Some(1),
            },
        ),
        (
            "product",
            array(Shape::Enum(&["POD", "CLUSTER", "SERVERLESS"])),
        ),
        ("count", int(Some(1), None)),
        ("cloud", Shape::Enum(CLOUDS)),
        ("countryCodes", array(patterned(Pattern::CountryCode))),
        ("cudaVersions", array(patterned(Pattern::CudaVersion))),
        ("minCudaVersion", patterned(Pattern::CudaFloor)),
    ]
}

const DATA_CENTER_INCLUDES: &[&str] = &["GPU_AVAILABILITY", "CPU_AVAILABILITY"];

pub(super) fn data_centers_query() -> Vec<(&'static str, Shape)> {
    vec![
        ("include", array(Shape::Enum(DATA_CENTER_INCLUDES))),
        (
            "regions",
            array(Shape::Enum(&[
                "NORTH_AMERICA",
                "SOUTH_AMERICA",
                "EUROPE",
                "ASIA",
                "MIDDLE_EAST",
                "AFRICA",
                "OCEANIA",
                "ANTARCTICA",
                "UNKNOWN",
            ])),
        ),
        ("networkVolumeTypes", array(Shape::Enum(VOLUME_TYPES))),
        (
            "compliance",
            array(Shape::Enum(&[
                "GDPR",
                "ISO_IEC_27001",
                "ISO_14001",
                "PCI_DSS",
                "HITRUST",
                "SOC_1_TYPE_2",
                "SOC_2_TYPE_2",
                "SOC_3_TYPE_2",
                "ITAR",
                "FISMA_HIGH",
                "HIPAA",
                "RENEWABLE",
            ])),
        ),
        ("globalNetwork", Shape::Bool),
    ]
}

pub(super) fn data_center_query() -> Vec<(&'static str, Shape)> {
    vec![("include", array(Shape::Enum(DATA_CENTER_INCLUDES)))]
}

pub(super) fn network_volume_billing_query() -> Vec<(&'static str, Shape)> {
    let mut shapes = pod_billing_query();
    shapes.retain(|(name, _)| *name != "podId");
    shapes.push(("networkVolumeId", string()));
    shapes
}

pub(super) fn pod_billing_query() -> Vec<(&'static str, Shape)> {
    vec![
        ("startTime", patterned(Pattern::DateTime)),
        ("endTime", patterned(Pattern::DateTime)),
        (
            "bucketSize",
            Shape::Enum(&["hour", "day", "week", "month", "year"]),
        ),
        ("lastN", int(Some(1), None)),
        ("podId", string()),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn errors(value: &Value, shape: &Shape) -> Vec<String> {
        let mut errors = Vec::new();
        check(value, shape, "", &mut errors);
        errors
    }

    #[test]
    fn create_pod_violations_name_their_path() {
        let body = json!({
            "name": "x", "image": "i", "gpu": null, "disk": 481.0,
            "mounts": {"persistent": {"size": 5, "path": "/w"}}, "supportPublicIp": true
        });
        assert_eq!(
            errors(&body, &create_pod()),
            [
                "gpu: must be an object",
                "mounts.persistent.size: must be >= 10",
                "supportPublicIp: additional property not allowed"
            ]
        );
        let mut integral = json!({"disk": 481.0});
        normalize_integers(&mut integral);
        assert_eq!(integral, json!({"disk": 481}));
    }

    #[test]
    fn query_values_are_typed_before_checking() {
        let mut errors = Vec::new();
        check_query("null", &Shape::Bool, "includeClusterPods", &mut errors);
        check_query("true", &Shape::Bool, "includeClusterPods", &mut errors);
        check_query(
            "AVAILABILITY,AVAILABILITY",
            &gpu_catalog_query()[0].1,
            "include",
            &mut errors,
        );
        assert_eq!(
            errors,
            [
                "includeClusterPods: must be a boolean",
                "include: must have at most 1 items"
            ]
        );
    }

    #[test]
    fn rfc3339_times() {
        assert!(is_rfc3339("2026-06-01T12:00:00Z"));
        assert!(is_rfc3339("2026-06-01T12:00:00.123+02:00"));
        assert!(!is_rfc3339("2026-02-30T12:00:00Z"));
        assert!(!is_rfc3339("2026-06-01 12:00:00"));
        assert!(!is_rfc3339("2026-06-01T12:00:00+2:00"));
    }
}
