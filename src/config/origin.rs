//! Where a setting came from, for error messages: `FILE:LINE:COLUMN` and
//! the offending text when the file set it, the variable's name when the
//! environment did; and the nearest valid name for an unknown one.

use std::ops::Range;

use toml_edit::{Document, Item};

use super::env::Overrides;

/// The pieces of a key path as errors spell it: `input.topics[0]`,
/// `kafka.producer."transaction.timeout.ms"`, `transform[2].expr`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn segments(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut chars = path.chars().peekable();
    let mut current = String::new();
    let flush = |current: &mut String, out: &mut Vec<Segment>| {
        if !current.is_empty() {
            out.push(Segment::Key(std::mem::take(current)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '.' => flush(&mut current, &mut out),
            '"' => {
                for q in chars.by_ref() {
                    if q == '"' {
                        break;
                    }
                    current.push(q);
                }
            }
            '[' => {
                flush(&mut current, &mut out);
                let digits: String = chars.by_ref().take_while(|d| *d != ']').collect();
                if let Ok(i) = digits.parse() {
                    out.push(Segment::Index(i));
                }
            }
            c => current.push(c),
        }
    }
    flush(&mut current, &mut out);
    out
}

/// Where the value of `key` (or, for an unknown key, the key itself) came
/// from: the environment variable that set it, or its place in the file.
/// `unknown` names a key that was not expected inside `key`.
pub(super) fn locate(
    key: &str,
    unknown: Option<&str>,
    file: &str,
    text: &str,
    env: &Overrides,
    table_env: &[(String, String)],
) -> Option<String> {
    let mut segs = segments(key);
    // serde's path of an unknown field ends with the field itself.
    if let (Some(u), Some(Segment::Key(last))) = (unknown, segs.last()) {
        if last == u {
            segs.pop();
        }
    }
    let dotted = |segs: &[Segment]| {
        segs.iter()
            .filter_map(|s| match s {
                Segment::Key(k) => Some(k.as_str()),
                Segment::Index(_) => None,
            })
            .collect::<Vec<_>>()
            .join(".")
    };
    // The environment wins over the file: look there first.
    let mut full = segs.clone();
    if let Some(u) = unknown {
        full.push(Segment::Key(u.to_owned()));
    }
    for n in (1..=full.len()).rev() {
        if let Some(o) = env.get(&dotted(&full[..n])) {
            return Some(format!("environment variable {}", o.var));
        }
    }
    if let [Segment::Key(kafka), Segment::Key(table), Segment::Key(property), ..] = &full[..] {
        if kafka == "kafka" {
            if let Some((var, _)) = table_env.iter().find(|(var, _)| {
                super::passthrough_env_key(var).is_some_and(|(t, k)| {
                    t.name() == table && super::dotted_keys_one(&k) == *property
                })
            }) {
                return Some(format!("environment variable {var}"));
            }
        }
    }
    let doc = Document::parse(text).ok()?;
    let span = find(doc.as_item(), &segs, unknown)?;
    let (line, column) = line_column(text, span.start);
    let excerpt: String = text
        .get(span)
        .and_then(|t| t.lines().next())
        .unwrap_or("")
        .chars()
        .take(80)
        .collect();
    Some(format!("{file}:{line}:{column}: `{}`", excerpt.trim()))
}

/// The span of the value at `segs`, or of the key `unknown` inside it.
fn find(root: &Item, segs: &[Segment], unknown: Option<&str>) -> Option<Range<usize>> {
    let mut item = root;
    let mut last_key: Option<Range<usize>> = None;
    for (n, s) in segs.iter().enumerate() {
        match s {
            Segment::Key(k) => {
                let table = item.as_table_like()?;
                last_key = table.key(k).and_then(|k| k.span());
                item = table.get(k)?;
            }
            Segment::Index(i) => match item {
                Item::ArrayOfTables(a) => {
                    let t = a.get(*i)?;
                    let rest = &segs[n + 1..];
                    let inner = Item::Table(t.clone());
                    if rest.is_empty() && unknown.is_none() {
                        return t.span();
                    }
                    return find(&inner, rest, unknown).or_else(|| t.span());
                }
                Item::Value(v) => return v.as_array()?.get(*i)?.span(),
                _ => return None,
            },
        }
    }
    if let Some(u) = unknown {
        return item.as_table_like()?.key(u)?.span();
    }
    match item {
        Item::Value(v) => v.span(),
        _ => last_key.or_else(|| item.span()),
    }
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

/// The candidate nearest to `word`, if one is near enough to be a typo.
pub(crate) fn nearest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// serde's "unknown field `x`, expected one of `a`, `b`" → (`x`, the
/// suggestion sentence).
pub(super) fn unknown_field(message: &str) -> Option<(String, String)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, expected) = rest.split_once('`')?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let hint = match nearest(field, candidates.iter().copied()) {
        Some(best) => format!("unknown key `{field}`; did you mean `{best}`?"),
        None if candidates.is_empty() => format!("unknown key `{field}`: this table takes no keys"),
        None => format!(
            "unknown key `{field}`; valid keys: {}",
            candidates.join(", ")
        ),
    };
    Some((field.to_owned(), hint))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[kafka]\nbootstrap_servers = \"b\"\n\n[kafka.producer]\n\"transaction.timeout.ms\" = \"abc\"\n\n[input]\ntopics = [\"a\", \"b c\"]\n\n[processing]\ncommit_interval = 5\n";

    fn at(key: &str, unknown: Option<&str>) -> Option<String> {
        locate(key, unknown, "f.toml", TEXT, &Overrides::new(), &[])
    }

    #[test]
    fn values_keys_and_list_items_are_found_with_line_and_column() {
        assert_eq!(
            at("kafka.producer.\"transaction.timeout.ms\"", None).as_deref(),
            Some("f.toml:5:28: `\"abc\"`")
        );
        assert_eq!(
            at("input.topics[1]", None).as_deref(),
            Some("f.toml:8:16: `\"b c\"`")
        );
        assert_eq!(
            at("processing", Some("commit_interval")).as_deref(),
            Some("f.toml:11:1: `commit_interval`")
        );
        assert_eq!(at("output.topic", None), None, "not in the file");
    }

    #[test]
    fn the_environment_is_named_before_the_file() {
        let mut env = Overrides::new();
        env.insert(
            "input.topics".into(),
            super::super::env::Override {
                var: "EXACTLY__INPUT__TOPICS".into(),
            },
        );
        assert_eq!(
            locate("input.topics[0]", None, "f", TEXT, &env, &[]).as_deref(),
            Some("environment variable EXACTLY__INPUT__TOPICS")
        );
        let table_env = vec![(
            "EXACTLY__KAFKA__PRODUCER__TRANSACTION_TIMEOUT_MS".to_owned(),
            "1".to_owned(),
        )];
        assert_eq!(
            locate(
                "kafka.producer.\"transaction.timeout.ms\"",
                None,
                "f",
                TEXT,
                &Overrides::new(),
                &table_env
            )
            .as_deref(),
            Some("environment variable EXACTLY__KAFKA__PRODUCER__TRANSACTION_TIMEOUT_MS")
        );
    }

    #[test]
    fn unknown_fields_suggest_the_nearest_valid_name() {
        let (field, hint) = unknown_field(
            "unknown field `commit_interval`, expected one of `guarantee`, `commit_interval_ms`, `workers`",
        )
        .unwrap();
        assert_eq!(field, "commit_interval");
        assert_eq!(
            hint,
            "unknown key `commit_interval`; did you mean `commit_interval_ms`?"
        );
        let (_, hint) = unknown_field("unknown field `zzz`, expected `listen`").unwrap();
        assert_eq!(hint, "unknown key `zzz`; valid keys: listen");
    }
}
