//! [`Identity`]: who is on a connection, read back from the authorizer context
//! API Gateway attaches to every event of the connection.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequestContext;
use serde_json::Value;

use crate::names::authorizer as ctx;

/// Largest configurable token-expiry leeway, in seconds.
pub const MAX_LEEWAY_SECS: u64 = 300;

/// Who is on a connection, as the authorizer context says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub user_id: Option<String>,
    pub roles: Vec<String>,
    /// Epoch seconds at which the token expires; `None` for anonymous connections.
    pub token_expires_at: Option<u64>,
    /// The leeway the authorizer allowed past `exp` (its `ROOMCAST_JWT_LEEWAY_SECS`),
    /// applied here too so that both sides agree on when a token ends.
    pub leeway_secs: u64,
}

impl Identity {
    /// Reads the authorizer context API Gateway attaches to an event.
    pub fn from_context(context: &ApiGatewayWebsocketProxyRequestContext) -> Self {
        let fields = &context.authorizer.fields;
        let text = |key: &str| match fields.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        // API Gateway stringifies context values in the events it builds ("1" for
        // 1; AWS, "Output from an API Gateway Lambda authorizer"); an event built by
        // hand may carry the number itself: accept both.
        let number = |key: &str| match fields.get(key) {
            Some(Value::Number(n)) => context_number(&n.to_string()),
            Some(Value::String(s)) => context_number(s),
            _ => None,
        };
        let exp = number(ctx::EXP);
        Self {
            user_id: text(ctx::USER_ID),
            roles: text(ctx::ROLES)
                .map(|r| {
                    r.split(',')
                        .filter(|r| !r.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            token_expires_at: exp,
            // Bounded like the configuration (0 to 300 s), whatever the context says.
            leeway_secs: number(ctx::LEEWAY).unwrap_or(0).min(MAX_LEEWAY_SECS),
        }
    }

    /// The last epoch second at which the connection's token is still accepted:
    /// `exp` plus the authorizer's leeway. `None` for anonymous connections.
    pub fn valid_until(&self) -> Option<u64> {
        self.token_expires_at
            .map(|exp| exp.saturating_add(self.leeway_secs))
    }

    /// Whether the token behind the connection has expired at `now` (epoch seconds),
    /// with the same leeway the authorizer applied to `exp`.
    pub fn expired(&self, now: u64) -> bool {
        self.valid_until().is_some_and(|until| until < now)
    }

    /// The `expires_at` of an item (a connection record, a membership) that would
    /// live until `ttl_end` (epoch seconds): no later than the token, so the store's
    /// read-time TTL filters stop events to a connection that outlived its token,
    /// even if it never sends another frame.
    pub fn item_expires_at(&self, ttl_end: u64) -> u64 {
        // Items are live while `expires_at > now`; the token while `now <= until`.
        self.valid_until()
            .map_or(ttl_end, |until| ttl_end.min(until.saturating_add(1)))
    }
}

/// A whole, non-negative number from a context value's text: `1700000000`, or
/// `1700000000.0` / `1.7e9` as a float formatter may have written it.
fn context_number(text: &str) -> Option<u64> {
    let text = text.trim();
    text.parse::<u64>().ok().or_else(|| {
        let f = text.parse::<f64>().ok()?;
        // Bounded by u64's range; the cast cannot wrap.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f < 1.8e19).then_some(f as u64)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn identity_from_context_accepts_numbers_and_strings() {
        let mut context = ApiGatewayWebsocketProxyRequestContext::default();
        assert_eq!(Identity::from_context(&context), Identity::default());
        let fields = &mut context.authorizer.fields;
        fields.insert("userId".into(), json!("alice"));
        fields.insert("roles".into(), json!("admin,ops"));
        fields.insert("exp".into(), json!("1700000000"));
        let id = Identity::from_context(&context);
        assert_eq!(id.user_id.as_deref(), Some("alice"));
        assert_eq!(id.roles, ["admin", "ops"]);
        assert_eq!(id.token_expires_at, Some(1_700_000_000));
        assert!(id.expired(1_700_000_001));
        assert!(!id.expired(1_700_000_000));
        context.authorizer.fields.insert("exp".into(), json!(5));
        assert_eq!(Identity::from_context(&context).token_expires_at, Some(5));
        // As API Gateway stringifies them, and as a float formatter may write them.
        for (exp, leeway) in [
            (json!("5"), json!("30")),
            (json!(5.0), json!("30.0")),
            (json!("5e0"), json!(30)),
        ] {
            context.authorizer.fields.insert("exp".into(), exp);
            context.authorizer.fields.insert("leeway".into(), leeway);
            let id = Identity::from_context(&context);
            assert_eq!((id.token_expires_at, id.leeway_secs), (Some(5), 30));
        }
        for bad in [
            json!("-5"),
            json!("5.5"),
            json!("soon"),
            json!(true),
            json!(-1),
        ] {
            context.authorizer.fields.insert("exp".into(), bad);
            assert_eq!(Identity::from_context(&context).token_expires_at, None);
        }
    }

    #[test]
    fn expiry_applies_the_authorizers_leeway() {
        let mut context = ApiGatewayWebsocketProxyRequestContext::default();
        let fields = &mut context.authorizer.fields;
        fields.insert("userId".into(), json!("alice"));
        fields.insert("exp".into(), json!(1_000));
        fields.insert("leeway".into(), json!("30"));
        let id = Identity::from_context(&context);
        assert_eq!(id.leeway_secs, 30);
        assert_eq!(id.valid_until(), Some(1_030));
        // The authorizer accepts a token up to 30 s past exp; so do the handlers.
        assert!(!id.expired(1_030));
        assert!(id.expired(1_031));
        // A leeway beyond the configurable maximum is capped.
        context
            .authorizer
            .fields
            .insert("leeway".into(), json!(99_999));
        assert_eq!(
            Identity::from_context(&context).leeway_secs,
            MAX_LEEWAY_SECS
        );
    }
}
