//! Lenient number decoding: RunPod has sent integers as floats (`50.0`) and numbers as strings
//! (`"0.44"`) across API versions, so counts and prices accept either form.

use serde::{Deserialize, Deserializer, de};

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Text(String),
}

impl NumberOrString {
    fn to_f64<E: de::Error>(&self) -> Result<f64, E> {
        #[expect(clippy::cast_precision_loss, reason = "API numbers are far below 2^52")]
        match self {
            Self::Unsigned(value) => Ok(*value as f64),
            Self::Signed(value) => Ok(*value as f64),
            Self::Float(value) => Ok(*value),
            Self::Text(text) => text
                .trim()
                .parse()
                .map_err(|_| E::custom(format!("expected a number, found {text:?}"))),
        }
    }

    fn to_u64<E: de::Error>(&self) -> Result<u64, E> {
        match self {
            Self::Unsigned(value) => Ok(*value),
            Self::Signed(value) => u64::try_from(*value)
                .map_err(|_| E::custom(format!("expected a count, found {value}"))),
            _ => {
                let value = self.to_f64::<E>()?;
                if value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value < 1e15 {
                    #[expect(
                        clippy::cast_possible_truncation,
                        clippy::cast_sign_loss,
                        reason = "checked: finite, non-negative, integral and small"
                    )]
                    Ok(value as u64)
                } else {
                    Err(E::custom(format!("expected a whole number, found {value}")))
                }
            }
        }
    }
}

pub(crate) fn f64_lenient<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    NumberOrString::deserialize(deserializer)?.to_f64()
}

pub(crate) fn u64_lenient<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    NumberOrString::deserialize(deserializer)?.to_u64()
}

pub(crate) fn u32_lenient<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let value = u64_lenient(deserializer)?;
    u32::try_from(value).map_err(|_| de::Error::custom(format!("number {value} is too large")))
}

pub(crate) fn opt_u64_lenient<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    Option::<NumberOrString>::deserialize(deserializer)?
        .map(|value| value.to_u64())
        .transpose()
}

pub(crate) fn opt_u16_lenient<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u16>, D::Error> {
    opt_u64_lenient(deserializer)?
        .map(|value| {
            u16::try_from(value)
                .map_err(|_| de::Error::custom(format!("port {value} out of range")))
        })
        .transpose()
}

pub(crate) fn opt_f64_lenient<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<f64>, D::Error> {
    Option::<NumberOrString>::deserialize(deserializer)?
        .map(|value| value.to_f64())
        .transpose()
}

/// `null` becomes the type's default (RunPod sends `null` for empty lists and maps at times).
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
