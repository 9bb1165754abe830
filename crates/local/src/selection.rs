//! The route selection expression: which JSON field of a text frame names its
//! route. API Gateway WebSocket APIs take `$request.body.<field>` (dotted paths
//! allowed); roomcast's own template uses `$request.body.action`.

use serde_json::Value;

/// `$request.body.a.b`: the JSON path in a frame whose string value is the route key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSelection {
    pub path: Vec<String>,
}

impl RouteSelection {
    /// Parses `$request.body.<field>[.<field>...]`; `None` for anything else.
    pub fn parse(expression: &str) -> Option<Self> {
        let fields = expression.trim().strip_prefix("$request.body.")?;
        let path: Vec<String> = fields.split('.').map(str::to_owned).collect();
        path.iter()
            .all(|f| !f.is_empty() && !f.contains(['$', '{', '}', ' ']))
            .then_some(Self { path })
    }

    /// `$request.body.action`, the expression of roomcast's template.
    pub fn action() -> Self {
        Self {
            path: vec!["action".to_owned()],
        }
    }

    /// The string at the path of a JSON frame; `None` when the frame is not JSON or
    /// the value is missing or not a string (the frame then goes to `$default`).
    pub fn key_of(&self, body: &str) -> Option<String> {
        let mut value: Value = serde_json::from_str(body).ok()?;
        for field in &self.path {
            value = match value {
                Value::Object(mut map) => map.remove(field)?,
                _ => return None,
            };
        }
        match value {
            Value::String(key) => Some(key),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_action_field_names_the_route_and_anything_else_names_none() {
        let action = RouteSelection::action();
        assert_eq!(
            action.key_of(r#"{"action":"join","room":"a"}"#).as_deref(),
            Some("join")
        );
        assert_eq!(
            action.key_of(r#"{"action":"send"}"#).as_deref(),
            Some("send")
        );
        assert_eq!(action.key_of(r#"{"action":5}"#), None);
        assert_eq!(action.key_of("not json"), None);
        assert_eq!(action.key_of("[1]"), None);
    }

    #[test]
    fn route_selection_paths() {
        let s = RouteSelection::parse("$request.body.meta.kind").unwrap();
        assert_eq!(
            s.key_of(r#"{"meta":{"kind":"join"}}"#).as_deref(),
            Some("join")
        );
        assert_eq!(s.key_of(r#"{"meta":{"kind":5}}"#), None);
        assert_eq!(s.key_of(r#"{"meta":"join"}"#), None);
        assert_eq!(s.key_of("not json"), None);
        for bad in [
            "$request.header.x",
            "action",
            "$request.body.",
            "${request.body.a}",
        ] {
            assert!(RouteSelection::parse(bad).is_none(), "{bad}");
        }
    }
}
