//! Value formats: how record values are read for expressions and written
//! back. Only steps with an expression decode the value; a passthrough
//! chain never does.

use jaq_json::{Num, Val};
use serde::{Deserialize, Serialize};

use super::TransformError;

/// How a record value is interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum Format {
    /// A JSON document: `.` in expressions is the document.
    #[default]
    Json,
    /// UTF-8 text: `.` is a JSON string.
    String,
    /// Opaque bytes: never decoded; `.` is null, and a `map` must produce a
    /// string, written as its UTF-8 bytes.
    Bytes,
}

impl TryFrom<String> for Format {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "json" => Ok(Format::Json),
            "string" => Ok(Format::String),
            "bytes" => Ok(Format::Bytes),
            other => Err(format!(
                "`{other}` is not a format; use \"json\", \"string\" or \"bytes\""
            )),
        }
    }
}

impl Format {
    /// The value as expressions see it. A tombstone (no value) is null.
    pub fn decode(self, value: Option<&[u8]>) -> Result<Val, TransformError> {
        let Some(bytes) = value else {
            return Ok(Val::Null);
        };
        match self {
            Format::Json => serde_json::from_slice::<Val>(bytes).map_err(|e| {
                TransformError::new("decode", format!("value is not valid JSON: {e}"))
            }),
            Format::String => std::str::from_utf8(bytes)
                .map(|s| Val::from(s.to_owned()))
                .map_err(|e| TransformError::new("decode", format!("value is not UTF-8: {e}"))),
            Format::Bytes => Ok(Val::Null),
        }
    }

    /// Bytes for an expression's result. Null writes a tombstone.
    pub fn encode(self, v: &Val) -> Result<Option<Vec<u8>>, TransformError> {
        if matches!(v, Val::Null) {
            return Ok(None);
        }
        match (self, v) {
            (Format::Json, v) => {
                let mut out = Vec::with_capacity(64);
                write_json(&mut out, v);
                Ok(Some(out))
            }
            (Format::String | Format::Bytes, Val::TStr(b) | Val::BStr(b)) => Ok(Some(b.to_vec())),
            (Format::String, v) => Ok(Some(v.to_string().into_bytes())),
            (Format::Bytes, v) => Err(TransformError::new(
                "encode",
                format!(
                    "output.format = \"bytes\" needs a string, got {}",
                    kind_of(v)
                ),
            )),
        }
    }
}

/// Writes `v` as compact JSON, byte for byte as jaq's `Display` writes it,
/// without going through `fmt` (the formatter's per-piece overhead was a
/// fifth of a map's time): integers through `itoa`, finite floats through
/// `ryu` as jaq's `Num` does. Big and decimal numbers, NaN, infinities, byte
/// strings and strings with invalid UTF-8 keep `Display`'s form.
pub(crate) fn write_json(out: &mut Vec<u8>, v: &Val) {
    use std::io::Write;
    match v {
        Val::Null => out.extend_from_slice(b"null"),
        Val::Bool(true) => out.extend_from_slice(b"true"),
        Val::Bool(false) => out.extend_from_slice(b"false"),
        Val::TStr(b) if std::str::from_utf8(b).is_ok() => write_json_str(out, b),
        Val::Arr(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(out, x);
            }
            out.push(b']');
        }
        Val::Obj(o) => {
            out.push(b'{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(out, k);
                out.push(b':');
                write_json(out, x);
            }
            out.push(b'}');
        }
        // As jaq's `Num` prints them, without the formatter.
        Val::Num(Num::Int(i)) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Val::Num(Num::Float(x)) if x.is_finite() => {
            out.extend_from_slice(ryu::Buffer::new().format_finite(*x).as_bytes())
        }
        other => write!(out, "{other}").expect("writing to a Vec cannot fail"),
    }
}

/// A valid UTF-8 string with jaq's escapes: the short ones for `\b \f \t
/// \n \r \\ \"`, `\u00xx` for other control characters and DEL.
pub(crate) fn write_json_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    let mut start = 0;
    for (i, &c) in s.iter().enumerate() {
        let short: &[u8] = match c {
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\\' => b"\\\\",
            b'"' => b"\\\"",
            0x00..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        if short.is_empty() {
            out.extend_from_slice(format!("\\u{c:04x}").as_bytes());
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

/// The text of a string value (without JSON quotes).
pub fn text_of(v: &Val) -> String {
    match v {
        Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(b).into_owned(),
        other => other.to_string(),
    }
}

/// The jq type name of a value, for error messages.
pub fn kind_of(v: &Val) -> &'static str {
    match v {
        Val::Null => "null",
        Val::Bool(_) => "boolean",
        Val::TStr(..) | Val::BStr(..) => "string",
        Val::Arr(_) => "array",
        Val::Obj(_) => "object",
        _ => "number",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_and_reports_bad_input() {
        let v = Format::Json.decode(Some(br#"{"a":[1,"x"]}"#)).unwrap();
        assert_eq!(
            Format::Json.encode(&v).unwrap().unwrap(),
            br#"{"a":[1,"x"]}"#
        );
        let e = Format::Json.decode(Some(b"{nope")).unwrap_err();
        assert_eq!(e.kind, "decode");
    }

    #[test]
    fn json_is_written_as_jaq_displays_it() {
        let mut values: Vec<Val> = [
            r#"{"a":[1,"x",{"b":null}],"c":-0.0,"d":1e300,"e":"\u0001é\"\\\/\b\f\n\r\t\u007f\u001f","f":true,"g":false}"#,
            r#"[1.5,2,18446744073709551615,-3,0.1,1e-7,123456789012345678901234567890,-9223372036854775808,9223372036854775807,1e22,5e-324,-1.5e-300,100.0,0]"#,
            r#""plain""#,
            r#"{}"#,
            r#"[]"#,
            r#"{"k\"ey":{"nested":[[],{}]}}"#,
        ]
        .iter()
        .map(|t| Format::Json.decode(Some(t.as_bytes())).unwrap())
        .collect();
        values.push(Val::utf8_str(vec![0xff, b'a', b'"']));
        values.push(Val::BStr(Box::new(vec![0x00, 0xff, b'x'].into())));
        values.push(Val::from(f64::NAN));
        values.push(Val::from(f64::INFINITY));
        for v in values {
            let mut out = Vec::new();
            write_json(&mut out, &v);
            assert_eq!(String::from_utf8_lossy(&out), v.to_string(), "{v}");
            assert_eq!(out, v.to_string().into_bytes());
        }
    }

    #[test]
    fn strings_are_written_without_quotes_and_must_be_utf8() {
        let v = Format::String
            .decode(Some("héllo \"q\"".as_bytes()))
            .unwrap();
        assert_eq!(
            Format::String.encode(&v).unwrap().unwrap(),
            "héllo \"q\"".as_bytes()
        );
        assert_eq!(
            Format::String.decode(Some(&[0xff, 0xfe])).unwrap_err().kind,
            "decode"
        );
    }

    #[test]
    fn bytes_are_never_decoded_and_need_a_string_back() {
        assert!(matches!(
            Format::Bytes.decode(Some(&[0xff])).unwrap(),
            Val::Null
        ));
        assert_eq!(
            Format::Bytes.encode(&Val::from(1.5f64)).unwrap_err().kind,
            "encode"
        );
    }

    #[test]
    fn null_is_a_tombstone_both_ways() {
        assert!(matches!(Format::Json.decode(None).unwrap(), Val::Null));
        assert_eq!(Format::Json.encode(&Val::Null).unwrap(), None);
    }
}
