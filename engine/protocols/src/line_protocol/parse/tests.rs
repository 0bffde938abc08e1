//! The parser against the oracle: IOx's `influxdb-line-protocol`, a port of
//! InfluxDB's Go parser. Every line gets the same verdict and, if accepted,
//! the same measurement, tags, fields and timestamp.

use influxdb_line_protocol as oracle;
use proptest::prelude::*;

use super::*;

/// A line's meaning, owned, comparable across the two parsers.
#[derive(Debug, PartialEq)]
struct Meaning {
    measurement: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, Value)>,
    timestamp: Option<i64>,
}

#[derive(Debug, PartialEq)]
enum Value {
    F64(u64),
    I64(i64),
    U64(u64),
    Bool(bool),
    String(String),
}

/// Each non-blank line: its number and its meaning, or that it was refused.
type Verdicts = Vec<(usize, Option<Meaning>)>;

fn ours(text: &str) -> Verdicts {
    let mut lines = Lines::new(text);
    let mut line = Line::default();
    let mut out = Vec::new();
    while let Some((number, outcome)) = lines.next(&mut line) {
        let meaning = outcome.ok().map(|()| Meaning {
            measurement: line.measurement.to_string(),
            tags: line
                .tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            fields: line
                .fields
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        FieldValue::F64(f) => Value::F64(f.to_bits()),
                        FieldValue::I64(i) => Value::I64(*i),
                        FieldValue::U64(u) => Value::U64(*u),
                        FieldValue::Bool(b) => Value::Bool(*b),
                        FieldValue::String(s) => Value::String(s.to_string()),
                    };
                    (k.to_string(), v)
                })
                .collect(),
            timestamp: line.timestamp,
        });
        out.push((number, meaning));
    }
    out
}

fn theirs(text: &str) -> Verdicts {
    let mut out = Vec::new();
    for (index, piece) in oracle::split_lines(text).enumerate() {
        let Some(parsed) = oracle::parse_lines(piece).next() else {
            continue;
        };
        let meaning = parsed.ok().map(|p| Meaning {
            measurement: p.series.measurement.to_string(),
            tags: p
                .series
                .tag_set
                .iter()
                .flatten()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            fields: p
                .field_set
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        oracle::FieldValue::F64(f) => Value::F64(f.to_bits()),
                        oracle::FieldValue::I64(i) => Value::I64(*i),
                        oracle::FieldValue::U64(u) => Value::U64(*u),
                        oracle::FieldValue::Boolean(b) => Value::Bool(*b),
                        oracle::FieldValue::String(s) => Value::String(s.to_string()),
                    };
                    (k.to_string(), v)
                })
                .collect(),
            timestamp: p.timestamp,
        });
        out.push((index + 1, meaning));
    }
    out
}

fn agree(text: &str) {
    assert_eq!(ours(text), theirs(text), "{text:?}");
}

#[test]
fn the_usual_lines() {
    for text in [
        "cpu,host=db-1,region=eu usage=12.5,cores=8i,inodes=9u,ok=true,note=\"fine\" 1700000000000000001",
        "cpu usage=1\n\ncpu usage=2 -3  \n",
        "  \t cpu usage=1e3,b=-1.5E-2,c=2e+9,d=-0i,e=0u",
        "# a comment\ncpu v=1\n   # another\n",
        "cpu v=t,w=T,x=True,y=TRUE,z=f,a=F,b=False,c=FALSE",
        "cpu v=\"\",w=\"a \\\"quoted\\\" \\\\ back\\slash\"",
        "cpu v=\"two\nlines\" 5\nnext v=1",
        "we\\ ird\\,m\\=e,t\\ k\\=\\,=t\\ v\\=\\,\\\\x f\\ k\\=\\,=1",
        "é,ü=ß ø=1",
    ] {
        agree(text);
        assert!(ours(text).iter().all(|(_, m)| m.is_some()), "{text:?}");
    }
}

#[test]
fn what_both_refuse() {
    for text in [
        "cpu",
        "cpu,host=a",
        "cpu ",
        "cpu v=1 ",
        "cpu v=1 3 trailing",
        "cpu v=1\t3",
        "cpu\tv=1",
        "cpu v=1.",
        "cpu v=.5",
        "cpu v=+1",
        "cpu v=1.0i",
        "cpu v=-1u",
        "cpu v=99999999999999999999i",
        "cpu v=18446744073709551616u",
        "cpu v=1 99999999999999999999",
        "cpu v=nan",
        "cpu v=inf",
        "cpu v=tru",
        "cpu v=\"open",
        "cpu v=\"a\\\"",
        "cpu v=1, w=2",
        "cpu v=1,w=2,",
        "cpu v=1,\t5",
        "cpu,=a v=1",
        "cpu,a= v=1",
        "cpu, v=1",
        ",cpu v=1",
        " =1",
        "cpu\\ v=1",
        "cpu,t=a\\ v=1",
        "cpu v=1\r",
        "cpu\0 v=1",
    ] {
        agree(text);
        assert!(ours(text).iter().all(|(_, m)| m.is_none()), "{text:?}");
    }
}

/// The oracle's one leniency, kept so that the two accept the same lines.
#[test]
fn a_comma_after_the_first_field_that_no_field_follows_is_ignored() {
    for text in ["cpu v=1,", "cpu v=1, 5", "cpu v=1,\n"] {
        agree(text);
        assert!(ours(text).iter().all(|(_, m)| m.is_some()), "{text:?}");
    }
}

#[test]
fn line_numbers_count_blank_and_comment_lines() {
    let text = "\n# c\nbad\n  \ncpu v=1\ncpu v=\"a\nb\" 1\nbad again\n";
    agree(text);
    let numbers: Vec<usize> = ours(text).iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, [3, 5, 6, 7]);
}

/// Where the Go line split and the grammar disagree, the split wins.
#[test]
fn the_line_split_decides_where_it_reads_quotes_differently() {
    for text in [
        "m a,b=\"x=y\"\nm c=1",
        "m a,b=\"x\ny\"\nm c=1",
        "m a\"b=1\nm c=\"d\"",
    ] {
        agree(text);
    }
}

/// Pieces that line protocol is made of, and that break it.
fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "m", "a", "é", "=", ",", " ", "  ", "\\", "\"", "\n", "\t", "1", "-", ".", "e", "i", "u",
        "t", "f", "true", "0", "9", "\\ ", "\\,", "\\=", "\\\\", "\\\"", "\r", "\0",
    ])
}

fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "a", "b", "é", "\\ ", "\\,", "\\=", "\\\\", "\\x", ",", "=", "\"", "\\",
        ]),
        0..4,
    )
    .prop_map(|p| p.concat())
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|i| format!("{i}i")),
        any::<u64>().prop_map(|u| format!("{u}u")),
        any::<f64>().prop_map(|f| format!("{f}")),
        any::<f64>().prop_map(|f| format!("{f:e}")),
        "-?[0-9]{1,4}(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,3})?[iu]?",
        prop::sample::select(vec!["t", "F", "True", "FALSE", "tru", "x"]).prop_map(String::from),
        "\"([a-z ,=\n]|\\\\\\\\|\\\\\"|\\\\)*\"",
    ]
}

fn structured_line() -> impl Strategy<Value = String> {
    (
        name(),
        prop::collection::vec((name(), name()), 0..3),
        prop::collection::vec((name(), value()), 0..3),
        prop::option::of(any::<i64>()),
        prop::sample::select(vec!["", " ", "  "]),
    )
        .prop_map(|(m, tags, fields, ts, tail)| {
            let mut line = m;
            for (k, v) in tags {
                line.push_str(&format!(",{k}={v}"));
            }
            let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            line.push(' ');
            line.push_str(&fields.join(","));
            if let Some(ts) = ts {
                line.push_str(&format!(" {ts}"));
            }
            line.push_str(tail);
            line
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn agrees_on_any_mix_of_pieces(pieces in prop::collection::vec(piece(), 0..40)) {
        agree(&pieces.concat());
    }

    #[test]
    fn agrees_on_lines_built_from_the_grammar(
        lines in prop::collection::vec(structured_line(), 1..6)
    ) {
        agree(&lines.join("\n"));
    }
}
