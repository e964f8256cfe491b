//! Subscription filters: `{"field": value}` (equality), `{"field": {"in": [...]}}` and
//! `{"field": {"gt"|"gte"|"lt"|"lte": n}}` on the event's `data` (DESIGN.md, "Wire
//! protocol"). Compiled once when the socket subscribes (a bad filter is `bad_args` then),
//! evaluated for each event before its frame is queued. A dotted field ("author.id") looks
//! into nested objects. Every test must hold; a missing field fails its test.

use serde_json::{Map, Value};

/// Most fields one filter may test.
pub const MAX_FIELDS: usize = 16;
/// Most values one `in` list may hold.
pub const MAX_IN_VALUES: usize = 256;

/// A compiled filter.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    tests: Vec<(Vec<String>, Test)>,
}

#[derive(Clone, Debug, PartialEq)]
enum Test {
    Equals(Value),
    In(Vec<Value>),
    Compare(Comparison, f64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Comparison {
    Gt,
    Gte,
    Lt,
    Lte,
}

/// Why a filter cannot be used; the message is for the client (`bad_args`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad filter: {0}")]
pub struct BadFilter(pub String);

impl Filter {
    /// Compiles a filter object.
    pub fn compile(spec: &Value) -> Result<Self, BadFilter> {
        let Value::Object(fields) = spec else {
            return Err(BadFilter("a filter is an object of field: test".into()));
        };
        if fields.len() > MAX_FIELDS {
            return Err(BadFilter(format!("at most {MAX_FIELDS} fields")));
        }
        let tests = fields
            .iter()
            .map(|(field, test)| {
                if field.is_empty() || field.split('.').any(str::is_empty) {
                    return Err(BadFilter(format!("`{field}` is not a field name")));
                }
                Ok((field.split('.').map(str::to_owned).collect(), Test::compile(field, test)?))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { tests })
    }

    /// True when `data` passes every test.
    pub fn matches(&self, data: &Value) -> bool {
        self.tests.iter().all(|(path, test)| lookup(data, path).is_some_and(|value| test.holds(value)))
    }
}

impl Test {
    fn compile(field: &str, test: &Value) -> Result<Self, BadFilter> {
        let Value::Object(op) = test else { return Ok(Self::Equals(test.clone())) };
        let (name, operand) = single(op).ok_or_else(|| {
            BadFilter(format!("`{field}`: write one test, like {{\"in\": [1, 2]}} or {{\"gte\": 10}}"))
        })?;
        let number =
            || operand.as_f64().ok_or_else(|| BadFilter(format!("`{field}`: `{name}` compares with a number")));
        Ok(match name {
            "in" => match operand {
                Value::Array(values) if values.len() <= MAX_IN_VALUES => Self::In(values.clone()),
                Value::Array(_) => return Err(BadFilter(format!("`{field}`: at most {MAX_IN_VALUES} values"))),
                _ => return Err(BadFilter(format!("`{field}`: `in` takes a list"))),
            },
            "gt" => Self::Compare(Comparison::Gt, number()?),
            "gte" => Self::Compare(Comparison::Gte, number()?),
            "lt" => Self::Compare(Comparison::Lt, number()?),
            "lte" => Self::Compare(Comparison::Lte, number()?),
            other => {
                return Err(BadFilter(format!("`{field}`: unknown test `{other}` (in, gt, gte, lt, lte)")));
            }
        })
    }

    fn holds(&self, value: &Value) -> bool {
        match self {
            Self::Equals(expected) => same(value, expected),
            Self::In(values) => values.iter().any(|v| same(value, v)),
            Self::Compare(op, bound) => value.as_f64().is_some_and(|n| match op {
                Comparison::Gt => n > *bound,
                Comparison::Gte => n >= *bound,
                Comparison::Lt => n < *bound,
                Comparison::Lte => n <= *bound,
            }),
        }
    }
}

fn single(op: &Map<String, Value>) -> Option<(&str, &Value)> {
    let mut entries = op.iter();
    let (name, operand) = entries.next()?;
    entries.next().is_none().then_some((name.as_str(), operand))
}

fn lookup<'a>(data: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(data, |value, key| value.as_object()?.get(key))
}

/// JSON equality where 1 and 1.0 are the same number.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn passes(filter: Value, data: Value) -> bool {
        Filter::compile(&filter).unwrap().matches(&data)
    }

    #[test]
    fn each_operator_holds_and_fails() {
        assert!(passes(json!({"kind": "post"}), json!({"kind": "post"})));
        assert!(!passes(json!({"kind": "post"}), json!({"kind": "page"})));
        assert!(passes(json!({"n": {"in": [1, 2]}}), json!({"n": 2.0})));
        assert!(!passes(json!({"n": {"in": [1, 2]}}), json!({"n": 3})));
        assert!(passes(json!({"n": {"gt": 1}}), json!({"n": 2})) && !passes(json!({"n": {"gt": 2}}), json!({"n": 2})));
        assert!(
            passes(json!({"n": {"gte": 2}}), json!({"n": 2})) && !passes(json!({"n": {"gte": 3}}), json!({"n": 2}))
        );
        assert!(passes(json!({"n": {"lt": 3}}), json!({"n": 2})) && !passes(json!({"n": {"lt": 2}}), json!({"n": 2})));
        assert!(
            passes(json!({"n": {"lte": 2}}), json!({"n": 2})) && !passes(json!({"n": {"lte": 1}}), json!({"n": 2}))
        );
    }

    #[test]
    fn nested_fields_and_missing_fields() {
        assert!(passes(json!({"author.id": 7}), json!({"author": {"id": 7}})));
        assert!(!passes(json!({"author.id": 7}), json!({"author": 7})));
        assert!(!passes(json!({"n": {"gt": 1}}), json!({"n": "5"})));
        assert!(!passes(json!({"n": 1}), json!(null)));
    }

    #[test]
    fn bad_filters_are_refused_with_a_reason() {
        for bad in [json!([1]), json!({"n": {"gt": "x"}}), json!({"n": {"near": 1}}), json!({"n": {"in": 3}})] {
            assert!(Filter::compile(&bad).is_err(), "{bad}");
        }
        assert!(Filter::compile(&json!({"n": {"gt": 1, "lt": 3}})).unwrap_err().0.contains("one test"));
        assert!(Filter::compile(&json!({"a..b": 1})).is_err());
    }
}
