//! Exact decimal numbers: the framework's form of Terraform's `number`, which is an
//! arbitrary-precision decimal (`0.1` is exactly one tenth, `2^70` is exact).
//!
//! A [`Number`] is kept as a canonical decimal string, so equality is exact and a value
//! that came from Terraform goes back byte-for-byte equal in meaning.

use std::fmt;

/// Longest exponent accepted when parsing (`1e4000` is fine, `1e400000` is refused).
const MAX_EXPONENT: i64 = 4_000;

/// Most digits a number may have once written out in plain decimal notation.
const MAX_DIGITS: usize = 10_000;

/// An exact decimal number.
///
/// Canonical form: no leading zeros in the integer part, no trailing zeros in the
/// fraction, no `-0`. `Display` writes plain decimal notation (`-12.5`, `0.001`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Number {
    negative: bool,
    /// Integer digits, at least `"0"`.
    integer: String,
    /// Fraction digits without trailing zeros, possibly empty.
    fraction: String,
}

/// A string that is not a decimal number, or one too large to handle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid number {text:?}: {reason}")]
pub struct NumberError {
    text: String,
    reason: &'static str,
}

impl Number {
    /// Zero.
    pub(crate) fn zero() -> Self {
        Self {
            negative: false,
            integer: "0".to_owned(),
            fraction: String::new(),
        }
    }

    /// Parses decimal notation: `-12`, `0.5`, `.5`, `1e3`, `2.5E-7`.
    pub(crate) fn parse(text: &str) -> Result<Self, NumberError> {
        let fail = |reason| NumberError {
            text: text.chars().take(64).collect(),
            reason,
        };
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(at) => (&rest[..at], Some(&rest[at + 1..])),
            None => (rest, None),
        };
        let (int_part, frac_part) = match mantissa.find('.') {
            Some(at) => (&mantissa[..at], &mantissa[at + 1..]),
            None => (mantissa, ""),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(fail("no digits"));
        }
        if !int_part.bytes().all(|b| b.is_ascii_digit())
            || !frac_part.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(fail("not a decimal number"));
        }
        let exponent: i64 = match exponent {
            None => 0,
            Some(e) => {
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                if digits.is_empty()
                    || digits.len() > 9
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(fail("bad exponent"));
                }
                e.parse().map_err(|_| fail("bad exponent"))?
            }
        };
        if exponent.abs() > MAX_EXPONENT {
            return Err(fail("exponent out of range"));
        }
        if int_part.len() + frac_part.len() > MAX_DIGITS {
            return Err(fail("too many digits"));
        }
        // value = 0.{digits} shifted: digits with the decimal point after `point` digits.
        let digits = format!("{int_part}{frac_part}");
        let point = int_part.len() as i64 + exponent;
        Self::from_digits(negative, &digits, point).ok_or_else(|| fail("too many digits"))
    }

    /// Builds a number from a digit string and the position of the decimal point
    /// (counted from the left of `digits`; may lie outside it).
    fn from_digits(negative: bool, digits: &str, point: i64) -> Option<Self> {
        let len = digits.len() as i64;
        let (integer, fraction) = if point <= 0 {
            let zeros = usize::try_from(-point).ok()?;
            if zeros + digits.len() > MAX_DIGITS {
                return None;
            }
            ("0".to_owned(), format!("{}{digits}", "0".repeat(zeros)))
        } else if point >= len {
            let zeros = usize::try_from(point - len).ok()?;
            if zeros + digits.len() > MAX_DIGITS {
                return None;
            }
            (format!("{digits}{}", "0".repeat(zeros)), String::new())
        } else {
            let at = usize::try_from(point).ok()?;
            (digits[..at].to_owned(), digits[at..].to_owned())
        };
        let integer = integer.trim_start_matches('0');
        let integer = if integer.is_empty() { "0" } else { integer };
        let fraction = fraction.trim_end_matches('0');
        let is_zero = integer == "0" && fraction.is_empty();
        Some(Self {
            negative: negative && !is_zero,
            integer: integer.to_owned(),
            fraction: fraction.to_owned(),
        })
    }

    /// The exact value of a binary floating-point number (every finite `f64` is a
    /// finite decimal). `None` for infinities and NaN.
    ///
    /// This is what the wire needs: Terraform sends a float only when it is the exact
    /// value. For a float that stands for a short decimal (JSON text), use
    /// [`Number::from_f64_shortest`].
    pub(crate) fn from_f64_exact(value: f64) -> Option<Self> {
        if !value.is_finite() {
            return None;
        }
        let bits = value.to_bits();
        let negative = bits >> 63 == 1;
        let biased = ((bits >> 52) & 0x7ff) as i64;
        let fraction = bits & ((1u64 << 52) - 1);
        let (mut mantissa, mut exponent) = if biased == 0 {
            (fraction, -1074)
        } else {
            (fraction | (1u64 << 52), biased - 1075)
        };
        if mantissa == 0 {
            return Some(Self::zero());
        }
        while mantissa & 1 == 0 {
            mantissa >>= 1;
            exponent += 1;
        }
        let mut big = BigDecimalDigits::from_u64(mantissa);
        if exponent >= 0 {
            big.multiply_by_power(2, exponent as u32);
            let digits = big.to_decimal();
            Self::from_digits(negative, &digits, digits.len() as i64)
        } else {
            // m * 2^-k = m * 5^k / 10^k
            let k = -exponent;
            big.multiply_by_power(5, k as u32);
            let digits = big.to_decimal();
            Self::from_digits(negative, &digits, digits.len() as i64 - k)
        }
    }

    /// The shortest decimal that reads back as this float (`0.1_f64` → `0.1`).
    /// `None` for infinities and NaN.
    pub(crate) fn from_f64_shortest(value: f64) -> Option<Self> {
        if !value.is_finite() {
            return None;
        }
        Self::parse(&format!("{value}")).ok()
    }

    /// Whether the number has no fractional part.
    pub(crate) fn is_integer(&self) -> bool {
        self.fraction.is_empty()
    }

    /// The value as `i64`, if it is an integer in range.
    pub(crate) fn to_i64(&self) -> Option<i64> {
        if !self.is_integer() {
            return None;
        }
        format!("{self}").parse().ok()
    }

    /// The value as `u64`, if it is a non-negative integer in range.
    pub fn to_u64(&self) -> Option<u64> {
        if !self.is_integer() || self.negative {
            return None;
        }
        self.integer.parse().ok()
    }

    /// The nearest `f64` (lossy for numbers that have no exact binary form).
    pub(crate) fn to_f64(&self) -> f64 {
        // A canonical decimal always parses; fall back to NaN rather than panic.
        format!("{self}").parse().unwrap_or(f64::NAN)
    }
}

impl Default for Number {
    fn default() -> Self {
        Self::zero()
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        f.write_str(&self.integer)?;
        if !self.fraction.is_empty() {
            write!(f, ".{}", self.fraction)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Number({self})")
    }
}

impl From<i64> for Number {
    fn from(value: i64) -> Self {
        Self {
            negative: value < 0,
            integer: value.unsigned_abs().to_string(),
            fraction: String::new(),
        }
    }
}

impl From<u64> for Number {
    fn from(value: u64) -> Self {
        Self {
            negative: false,
            integer: value.to_string(),
            fraction: String::new(),
        }
    }
}

impl From<i32> for Number {
    fn from(value: i32) -> Self {
        Self::from(i64::from(value))
    }
}

impl From<u32> for Number {
    fn from(value: u32) -> Self {
        Self::from(u64::from(value))
    }
}

impl std::str::FromStr for Number {
    type Err = NumberError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A non-negative big integer in base 10^9 limbs (least significant first), just enough
/// to write a float's exact value in decimal.
struct BigDecimalDigits {
    limbs: Vec<u64>,
}

impl BigDecimalDigits {
    const BASE: u64 = 1_000_000_000;

    fn from_u64(mut value: u64) -> Self {
        let mut limbs = Vec::new();
        while value > 0 {
            limbs.push(value % Self::BASE);
            value /= Self::BASE;
        }
        Self { limbs }
    }

    fn multiply_small(&mut self, factor: u64) {
        let mut carry = 0u64;
        for limb in &mut self.limbs {
            let product = *limb * factor + carry;
            *limb = product % Self::BASE;
            carry = product / Self::BASE;
        }
        while carry > 0 {
            self.limbs.push(carry % Self::BASE);
            carry /= Self::BASE;
        }
    }

    /// Multiplies by `base^exponent` (base 2 or 5) in chunks that keep every product
    /// below 2^64: a limb is < 2^30 and a chunk factor ≤ 2^31.
    fn multiply_by_power(&mut self, base: u64, mut exponent: u32) {
        let chunk = if base == 2 { 31 } else { 13 };
        while exponent > 0 {
            let step = exponent.min(chunk);
            self.multiply_small(base.pow(step));
            exponent -= step;
        }
    }

    fn to_decimal(&self) -> String {
        let mut out = String::new();
        for (i, limb) in self.limbs.iter().rev().enumerate() {
            if i == 0 {
                out.push_str(&limb.to_string());
            } else {
                out.push_str(&format!("{limb:09}"));
            }
        }
        if out.is_empty() {
            out.push('0');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_canonicalises() {
        let cases = [
            ("0", "0"),
            ("-0", "0"),
            ("-0.000", "0"),
            ("007", "7"),
            ("1.50", "1.5"),
            (".5", "0.5"),
            ("5.", "5"),
            ("1e3", "1000"),
            ("1.25E+2", "125"),
            ("125e-4", "0.0125"),
            ("-3.14", "-3.14"),
            ("+2", "2"),
            (
                "123456789012345678901234567890.000000000000000000001",
                "123456789012345678901234567890.000000000000000000001",
            ),
        ];
        for (input, want) in cases {
            let n = Number::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(n.to_string(), want, "parsing {input}");
        }
    }

    #[test]
    fn parse_rejects_garbage() {
        for input in [
            "",
            "-",
            ".",
            "1.2.3",
            "abc",
            "1e",
            "1e+",
            "0x10",
            "1e99999999",
            " 1",
        ] {
            assert!(Number::parse(input).is_err(), "{input:?} should not parse");
        }
    }

    #[test]
    fn floats_convert_exactly() {
        assert_eq!(
            Number::from_f64_exact(0.5).map(|n| n.to_string()),
            Some("0.5".into())
        );
        assert_eq!(
            Number::from_f64_exact(-2.0).map(|n| n.to_string()),
            Some("-2".into())
        );
        assert_eq!(
            Number::from_f64_exact(0.1).map(|n| n.to_string()),
            Some("0.1000000000000000055511151231257827021181583404541015625".into())
        );
        assert_eq!(
            Number::from_f64_exact(2f64.powi(70)).map(|n| n.to_string()),
            Some("1180591620717411303424".into())
        );
        assert!(Number::from_f64_exact(f64::INFINITY).is_none());
        let tiny = Number::from_f64_exact(f64::from_bits(1)).map(|n| n.to_string());
        assert!(tiny.is_some_and(|t| t.starts_with("0.000") && t.ends_with("625")));
    }

    #[test]
    fn shortest_floats_read_like_text() {
        assert_eq!(
            Number::from_f64_shortest(0.1).map(|n| n.to_string()),
            Some("0.1".into())
        );
        assert_eq!(
            Number::from_f64_shortest(1e21).map(|n| n.to_string()),
            Some("1000000000000000000000".into())
        );
    }

    #[test]
    fn integer_conversions() {
        assert_eq!(Number::from(i64::MIN).to_string(), i64::MIN.to_string());
        assert_eq!(Number::from(-5i64).to_i64(), Some(-5));
        assert_eq!(Number::from(u64::MAX).to_u64(), Some(u64::MAX));
        assert_eq!(Number::from(u64::MAX).to_i64(), None);
        assert_eq!(Number::parse("1.5").ok().and_then(|n| n.to_i64()), None);
        assert_eq!(Number::from(0i64), Number::zero());
    }
}
