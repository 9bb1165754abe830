//! The CloudFormation evaluator: YAML short forms to long forms, the intrinsics
//! the emulator can evaluate without a deployment (`Ref`, `Fn::Sub`, `Fn::Join`,
//! `Fn::GetAtt` as a reference), `Conditions` with the parameters' defaults, and
//! the pseudo parameters a local run makes up. What needs a deployment is an
//! `Err` naming the intrinsic, never a guess.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::resources::{kind, served_kind};
use super::{Diagnostic, diagnostic};
use crate::aws::LOCAL_ACCOUNT;

/// Template parameters and their defaults.
pub type Parameters = BTreeMap<String, Option<String>>;

/// The `Parameters` section: each parameter's `Default`, if it has one.
pub(super) fn parameters(doc: &Value) -> Parameters {
    doc.get("Parameters")
        .and_then(Value::as_object)
        .map(|params| {
            params
                .iter()
                .map(|(name, p)| (name.clone(), p.get("Default").and_then(scalar)))
                .collect()
        })
        .unwrap_or_default()
}

/// What the deployed stack would know that a local run must make up.
#[derive(Debug, Clone)]
pub struct Pseudo {
    pub region: String,
    pub stack_name: String,
}

/// A value of the environment: `Ok(None)` for `AWS::NoValue`.
pub(super) fn resolve(
    value: &Value,
    parameters: &Parameters,
    pseudo: &Pseudo,
) -> Result<Option<String>, String> {
    if let Some(text) = scalar(value) {
        return Ok(Some(text));
    }
    let Some((function, arg)) = intrinsic(value) else {
        return Err("not a string or a supported intrinsic".into());
    };
    let name = |v: &str| -> Result<Option<String>, String> {
        if v == "AWS::NoValue" {
            return Ok(None);
        }
        if let Some(p) = pseudo_value(v, pseudo) {
            return Ok(Some(p));
        }
        match parameters.get(v) {
            Some(Some(default)) => Ok(Some(default.clone())),
            Some(None) => Err(format!("parameter {v} has no Default")),
            None => Err(format!(
                "{v} is a resource, whose name or attributes exist only once deployed"
            )),
        }
    };
    // `${x}` from the variables of `[text, {x: …}]`, else a parameter or pseudo parameter.
    let sub = |text: &str, variables: &Map<String, Value>| {
        substitute(text, &|v| match variables.get(v) {
            Some(value) => resolve(value, parameters, pseudo).map(Option::unwrap_or_default),
            None if v.contains('.') => {
                Err(format!("${{{v}}} is an attribute known only once deployed"))
            }
            None => name(v).map(Option::unwrap_or_default),
        })
        .map(Some)
    };
    match (function, arg) {
        ("Ref", Value::String(v)) => name(v),
        ("Fn::Sub", Value::String(text)) => sub(text, &Map::new()),
        ("Fn::Sub", Value::Array(parts)) => match parts.as_slice() {
            [Value::String(text), Value::Object(variables)] => sub(text, variables),
            _ => Err("Fn::Sub takes a string or [string, {variables}]".into()),
        },
        ("Fn::Join", Value::Array(parts)) => match parts.as_slice() {
            [Value::String(sep), Value::Array(items)] => {
                let mut out = Vec::new();
                for item in items {
                    out.extend(resolve(item, parameters, pseudo)?);
                }
                Ok(Some(out.join(sep)))
            }
            _ => Err("Fn::Join needs [separator, [values]]".into()),
        },
        (other, _) => Err(format!("{other} cannot be resolved locally")),
    }
}

fn pseudo_value(name: &str, pseudo: &Pseudo) -> Option<String> {
    Some(match name {
        "AWS::Region" => pseudo.region.clone(),
        "AWS::AccountId" => LOCAL_ACCOUNT.to_owned(),
        "AWS::Partition" => "aws".to_owned(),
        "AWS::URLSuffix" => "amazonaws.com".to_owned(),
        "AWS::StackName" => pseudo.stack_name.clone(),
        "AWS::StackId" => format!(
            "arn:aws:cloudformation:{}:{LOCAL_ACCOUNT}:stack/{}/local",
            pseudo.region, pseudo.stack_name
        ),
        _ => return None,
    })
}

/// Replaces each `${name}` of a `Fn::Sub` string (`${!x}` stays a literal `${x}`).
fn substitute(
    text: &str,
    lookup: &dyn Fn(&str) -> Result<String, String>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
        let name = &after[..end];
        match name.strip_prefix('!') {
            Some(literal) => out.push_str(&format!("${{{literal}}}")),
            None => out.push_str(&lookup(name.trim())?),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A value as text with references kept as `${Name}` / `${Name.Attr}` markers, to
/// read which resource a `Target` or `IntegrationUri` names.
pub(super) fn symbolic(value: &Value) -> Result<String, String> {
    if let Some(text) = scalar(value) {
        return Ok(text);
    }
    match intrinsic(value) {
        Some(("Ref", Value::String(name))) => Ok(format!("${{{name}}}")),
        Some(("Fn::GetAtt", Value::Array(parts))) => {
            let parts: Vec<&str> = parts.iter().filter_map(Value::as_str).collect();
            Ok(format!("${{{}}}", parts.join(".")))
        }
        Some(("Fn::Sub", Value::String(text))) => Ok(text.clone()),
        Some(("Fn::Sub", Value::Array(parts))) => match parts.as_slice() {
            [Value::String(text), Value::Object(vars)] => {
                substitute(text, &|name| match vars.get(name) {
                    Some(v) => symbolic(v),
                    None => Ok(format!("${{{name}}}")),
                })
            }
            _ => Err("Fn::Sub needs a string or [string, {variables}]".into()),
        },
        Some(("Fn::Join", Value::Array(parts))) => match parts.as_slice() {
            [Value::String(sep), Value::Array(items)] => Ok(items
                .iter()
                .map(symbolic)
                .collect::<Result<Vec<_>, _>>()?
                .join(sep)),
            _ => Err("Fn::Join needs [separator, [values]]".into()),
        },
        Some((other, _)) => Err(format!("the intrinsic {other} cannot be resolved locally")),
        None => Err("not a string or an intrinsic function".into()),
    }
}

/// The logical id that `{"Ref": X}` or `{"Fn::GetAtt": [X, attribute]}` (or
/// `"X.attribute"`) names.
pub(super) fn named<'a>(value: &'a Value, attribute: &str) -> Option<&'a str> {
    match intrinsic(value)? {
        ("Ref", Value::String(id)) => Some(id),
        ("Fn::GetAtt", Value::Array(parts)) => match parts.as_slice() {
            [Value::String(id), Value::String(attr)] if attr == attribute => Some(id),
            _ => None,
        },
        ("Fn::GetAtt", Value::String(dotted)) => dotted
            .strip_suffix(attribute)
            .and_then(|id| id.strip_suffix('.')),
        _ => None,
    }
}

/// The template's resources as a deployment with the parameters' defaults would
/// create them: a resource whose `Condition` is false is left out. A condition
/// that needs what only a deployment knows (a pseudo parameter, a parameter
/// without a default) is reported, and its resources are kept.
pub(super) fn deployed_resources(
    doc: &Value,
    parameters: &Parameters,
    diagnostics: &mut Vec<Diagnostic>,
) -> Map<String, Value> {
    let empty = Map::new();
    let resources = doc
        .get("Resources")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let conditions = Conditions {
        defined: doc
            .get("Conditions")
            .and_then(Value::as_object)
            .unwrap_or(&empty),
        parameters,
    };
    let mut kept = Map::new();
    for (id, resource) in resources {
        let served = served_kind(kind(resource));
        let condition = match resource.get("Condition") {
            Some(Value::String(name)) => Some(name.as_str()),
            Some(_) if served => {
                diagnostics.push(diagnostic(
                    id,
                    "Condition is not the name of a condition: ignored, the resource is served",
                ));
                None
            }
            _ => None,
        };
        if let Some(name) = condition.filter(|_| served) {
            match conditions.named(name, 0) {
                Ok(true) => {}
                Ok(false) => {
                    diagnostics.push(diagnostic(
                        id,
                        format!(
                            "Condition {name} is false with the parameters' defaults: \
                             left out, as such a deployment would"
                        ),
                    ));
                    continue;
                }
                Err(why) => diagnostics.push(diagnostic(
                    id,
                    format!("Condition {name} cannot be evaluated locally ({why}): served"),
                )),
            }
        }
        kept.insert(id.clone(), resource.clone());
    }
    kept
}

/// The `Conditions` section, evaluated with the parameters' defaults.
struct Conditions<'a> {
    defined: &'a Map<String, Value>,
    parameters: &'a Parameters,
}

impl Conditions<'_> {
    /// Conditions may refer to each other; deeper than this is a cycle.
    const MAX_DEPTH: usize = 32;

    fn named(&self, name: &str, depth: usize) -> Result<bool, String> {
        if depth > Self::MAX_DEPTH {
            return Err(format!("condition {name} refers to itself"));
        }
        let value = self
            .defined
            .get(name)
            .ok_or_else(|| format!("no condition {name} in Conditions"))?;
        self.evaluate(value, depth + 1)
    }

    fn evaluate(&self, value: &Value, depth: usize) -> Result<bool, String> {
        let Some((function, arg)) = value
            .as_object()
            .filter(|m| m.len() == 1)
            .and_then(|m| m.iter().next().map(|(k, v)| (k.as_str(), v)))
        else {
            return Err(
                "a condition must be one Fn::Equals, Fn::Not, Fn::And, Fn::Or or Condition".into(),
            );
        };
        let all = |items: &Value| -> Result<Vec<bool>, String> {
            match items {
                Value::Array(items) => items.iter().map(|c| self.evaluate(c, depth + 1)).collect(),
                _ => Err(format!("{function} takes a list of conditions")),
            }
        };
        match (function, arg) {
            ("Condition", Value::String(name)) => self.named(name, depth),
            ("Fn::Equals", Value::Array(pair)) => match pair.as_slice() {
                [a, b] => Ok(self.text(a)? == self.text(b)?),
                _ => Err("Fn::Equals takes two values".into()),
            },
            ("Fn::Not", items) => match all(items)?.as_slice() {
                [one] => Ok(!one),
                _ => Err("Fn::Not takes one condition".into()),
            },
            ("Fn::And", items) => Ok(all(items)?.into_iter().all(|c| c)),
            ("Fn::Or", items) => Ok(all(items)?.into_iter().any(|c| c)),
            (other, _) => Err(format!("{other} is not a condition function")),
        }
    }

    fn text(&self, value: &Value) -> Result<String, String> {
        if let Some(text) = scalar(value) {
            return Ok(text);
        }
        match intrinsic(value) {
            Some(("Ref", Value::String(name))) => match self.parameters.get(name) {
                Some(Some(default)) => Ok(default.clone()),
                Some(None) => Err(format!("parameter {name} has no Default")),
                None => Err(format!("{name} is known only once deployed")),
            },
            Some((other, _)) => Err(format!("{other} inside a condition")),
            None => Err("not a string or a Ref".into()),
        }
    }
}

/// `{"Ref": x}` or `{"Fn::X": args}` (one key).
fn intrinsic(value: &Value) -> Option<(&str, &Value)> {
    match value {
        Value::Object(map) if map.len() == 1 => {
            let (name, arg) = map.iter().next()?;
            (name == "Ref" || name.starts_with("Fn::")).then_some((name.as_str(), arg))
        }
        _ => None,
    }
}

pub(super) fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(super) fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// YAML to JSON, with CloudFormation's short-form tags turned into their long
/// forms: `!Ref X` → `{"Ref": X}`, `!GetAtt A.B` → `{"Fn::GetAtt": [A, B]}`,
/// `!Sub …` → `{"Fn::Sub": …}`, and so on for every `!Name`.
pub(super) fn to_json(value: serde_yaml_ng::Value) -> Value {
    use serde_yaml_ng::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n).unwrap_or(Value::Null),
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        other => scalar(&to_json(other)).unwrap_or_default(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let tag = tag.trim_start_matches('!');
            let inner = to_json(tagged.value);
            let (name, arg) = match tag {
                "Ref" | "Condition" => (tag.to_owned(), inner),
                "GetAtt" => {
                    let arg = match inner {
                        Value::String(s) => match s.split_once('.') {
                            Some((a, b)) => serde_json::json!([a, b]),
                            None => Value::String(s),
                        },
                        other => other,
                    };
                    ("Fn::GetAtt".to_owned(), arg)
                }
                other => (format!("Fn::{other}"), inner),
            };
            let mut map = Map::new();
            map.insert(name, arg);
            Value::Object(map)
        }
    }
}
