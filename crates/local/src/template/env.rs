//! The functions' environments: env files in `sam local --env-vars` format, each
//! function's variables resolved with the template's parameters and the env
//! file's overrides, one merged environment for `cargo lambda watch`, and its
//! dotenv text.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::cfn::{Pseudo, resolve, scalar};
use super::{Diagnostic, Template, TemplateError, diagnostic};

/// Why an env file (`sam local --env-vars` format) was refused. Messages name
/// sections and variables, never values (they may be secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvFileError {
    #[error("not a JSON object of sections: {0}")]
    Json(String),
    #[error("{0:?} must be an object of variables")]
    Section(String),
    #[error("{section}.{name} must be a string, number or boolean")]
    Value { section: String, name: String },
}

/// Each function's environment variables, by logical id.
pub type Environments = BTreeMap<String, BTreeMap<String, String>>;

/// Local overrides of the functions' environment, in the format of `sam local
/// --env-vars`: `{"Parameters": {..every function..}, "LogicalId": {..one..}}`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EnvFile {
    pub global: BTreeMap<String, String>,
    pub functions: BTreeMap<String, BTreeMap<String, String>>,
}

/// Names only: the values include secrets such as `ROOMCAST_JWT_SECRET`.
impl std::fmt::Debug for EnvFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvFile")
            .field("global", &self.global.keys().collect::<Vec<_>>())
            .field("functions", &names_only(&self.functions))
            .finish()
    }
}

/// Each function's variable names, without their values.
pub fn names_only(
    per_function: &BTreeMap<String, BTreeMap<String, String>>,
) -> BTreeMap<&str, Vec<&str>> {
    per_function
        .iter()
        .map(|(id, vars)| (id.as_str(), vars.keys().map(String::as_str).collect()))
        .collect()
}

impl EnvFile {
    pub fn from_file(path: &str) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|source| TemplateError::EnvFile {
            path: path.to_owned(),
            source,
        })
    }

    pub fn parse(json: &str) -> Result<Self, EnvFileError> {
        // serde_json's messages give a position, not the text there.
        let doc: Map<String, Value> =
            serde_json::from_str(json).map_err(|e| EnvFileError::Json(e.to_string()))?;
        let mut file = Self::default();
        for (section, variables) in doc {
            let Value::Object(variables) = variables else {
                return Err(EnvFileError::Section(section));
            };
            let mut values = BTreeMap::new();
            for (name, value) in variables {
                // SAM passes numbers and booleans on as their text.
                let Some(text) = scalar(&value) else {
                    return Err(EnvFileError::Value { section, name });
                };
                values.insert(name, text);
            }
            if section == "Parameters" {
                file.global = values;
            } else {
                file.functions.insert(section, values);
            }
        }
        Ok(file)
    }
}

/// The environment of each function: the template's variables resolved where they
/// can be (literals, parameter defaults, pseudo parameters), then the env file's
/// overrides, which, as with `sam local`, apply only to variables the template
/// declares (a function-specific entry wins over `Parameters`). A variable that
/// cannot be resolved and is not overridden is left out and reported.
pub fn resolve_environment(
    template: &Template,
    env_file: &EnvFile,
    pseudo: &Pseudo,
) -> (Environments, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let mut all = BTreeMap::new();
    for (id, function) in &template.functions {
        let own = env_file.functions.get(id);
        let mut env = BTreeMap::new();
        for (name, value) in &function.environment {
            let overridden = own
                .and_then(|o| o.get(name))
                .or_else(|| env_file.global.get(name));
            if let Some(v) = overridden {
                env.insert(name.clone(), v.clone());
                continue;
            }
            match resolve(value, &template.parameters, pseudo) {
                Ok(Some(v)) => {
                    env.insert(name.clone(), v);
                }
                Ok(None) => {} // AWS::NoValue
                Err(why) => diagnostics.push(diagnostic(
                    id,
                    format!("{name} is left unset: {why}; set it in the env file"),
                )),
            }
        }
        for name in own.into_iter().flat_map(BTreeMap::keys) {
            if !function.environment.contains_key(name) {
                diagnostics.push(diagnostic(
                    id,
                    format!(
                        "env file variable {name} is ignored: the template does not declare it \
                         for this function (sam local ignores it too)"
                    ),
                ));
            }
        }
        all.insert(id.clone(), env);
    }
    for name in env_file.global.keys() {
        if !template
            .functions
            .values()
            .any(|f| f.environment.contains_key(name))
        {
            diagnostics.push(diagnostic(
                "Parameters",
                format!("env file variable {name} is ignored: no function declares it"),
            ));
        }
    }
    for id in env_file.functions.keys() {
        if !template.functions.contains_key(id) {
            diagnostics.push(diagnostic(
                id,
                "the env file names a function the template does not have",
            ));
        }
    }
    (all, diagnostics)
}

/// One environment for every function, as `cargo lambda watch` gives all functions
/// the same variables: the union, with a diagnostic where functions disagree (the
/// first function in logical-id order wins).
pub fn merged_environment(
    per_function: &BTreeMap<String, BTreeMap<String, String>>,
) -> (BTreeMap<String, String>, Vec<Diagnostic>) {
    let mut merged: BTreeMap<String, (String, &str)> = BTreeMap::new();
    let mut diagnostics = Vec::new();
    for (id, env) in per_function {
        for (name, value) in env {
            match merged.get(name) {
                None => {
                    merged.insert(name.clone(), (value.clone(), id));
                }
                Some((kept, by)) if kept != value => diagnostics.push(diagnostic(
                    id,
                    format!("{name} differs from {by}'s; one environment for all keeps {by}'s"),
                )),
                Some(_) => {}
            }
        }
    }
    (
        merged.into_iter().map(|(k, (v, _))| (k, v)).collect(),
        diagnostics,
    )
}

/// `KEY=value` lines for `cargo lambda watch --env-file`. Its parser
/// (env-file-reader) takes unquoted values without whitespace, quotes, `#` or `=`,
/// and quoted ones (`'…'`, `"…"` or `` `…` ``) without escapes for other quotes, so
/// each value is quoted with a quote it does not contain. A value containing all
/// three cannot be written: its name is returned instead.
pub fn dotenv(env: &BTreeMap<String, String>) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut unwritable = Vec::new();
    for (name, value) in env {
        let plain = !value.is_empty()
            && value
                .chars()
                .all(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | '`' | '#' | '='));
        if plain {
            out.push_str(&format!("{name}={value}\n"));
        } else if value.contains("\\n") {
            // The parser turns a literal backslash-n inside quotes into a newline.
            unwritable.push(name.clone());
        } else {
            match ['\'', '"', '`'].into_iter().find(|q| !value.contains(*q)) {
                Some(q) => out.push_str(&format!("{name}={q}{value}{q}\n")),
                None => unwritable.push(name.clone()),
            }
        }
    }
    (out, unwritable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::tests::{pseudo, real};

    #[test]
    fn resolves_the_real_environment_with_overrides() {
        let t = real();
        let file = EnvFile::parse(
            r#"{"Parameters": {"ROOMCAST_TABLE": "local-table", "UNDECLARED": "x"},
                "MessageFunction": {"ROOMCAST_POLICIES": "{}", "ROOMCAST_TABLE": "message-table"},
                "GhostFunction": {}}"#,
        )
        .unwrap();
        let (env, diagnostics) = resolve_environment(&t, &file, &pseudo());
        assert_eq!(env["ConnectFunction"]["ROOMCAST_TABLE"], "local-table");
        // Function-specific entries win over Parameters.
        assert_eq!(env["MessageFunction"]["ROOMCAST_TABLE"], "message-table");
        assert_eq!(env["MessageFunction"]["ROOMCAST_POLICIES"], "{}");
        // Parameter defaults.
        assert_eq!(env["ConnectFunction"]["RUST_LOG"], "info");
        assert_eq!(env["AuthorizerFunction"]["ROOMCAST_JWT_LEEWAY_SECS"], "30");
        // The management endpoint !Sub needs the API's id: dropped and reported.
        assert!(!env["BroadcastFunction"].contains_key("ROOMCAST_MANAGEMENT_ENDPOINT"));
        let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        let has = |needle: &str| text.iter().any(|d| d.contains(needle));
        assert!(
            has("BroadcastFunction: ROOMCAST_MANAGEMENT_ENDPOINT is left unset"),
            "{text:?}"
        );
        assert!(has("UNDECLARED is ignored"), "{text:?}");
        assert!(has("GhostFunction"), "{text:?}");
        // The stack gives the HS256 secret by its Parameter Store name (empty by
        // default); the secret itself is declared empty, for env files to set.
        assert_eq!(env["AuthorizerFunction"]["ROOMCAST_JWT_SECRET"], "");
        assert_eq!(
            env["AuthorizerFunction"]["ROOMCAST_JWT_SECRET_PARAMETER"],
            ""
        );
        // The policies reach every function from Globals.
        for id in ["ConnectFunction", "DisconnectFunction", "BroadcastFunction"] {
            assert_eq!(env[id]["ROOMCAST_POLICIES"], "", "{id}");
        }
    }

    #[test]
    fn the_sample_env_file_leaves_nothing_unresolved() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/env.local.json");
        let file = EnvFile::from_file(path).expect("infra/env.local.json parses");
        let (env, diagnostics) = resolve_environment(&real(), &file, &pseudo());
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let (merged, conflicts) = merged_environment(&env);
        assert!(conflicts.is_empty(), "{conflicts:?}");
        assert_eq!(
            merged["ROOMCAST_MANAGEMENT_ENDPOINT"],
            "http://127.0.0.1:3001/local"
        );
        // The one for sam local start-lambda: the gateway on the host, not 3001.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/env.sam.json");
        let file = EnvFile::from_file(path).expect("infra/env.sam.json parses");
        let (env, diagnostics) = resolve_environment(&real(), &file, &pseudo());
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        assert_eq!(
            env["BroadcastFunction"]["ROOMCAST_MANAGEMENT_ENDPOINT"],
            "http://host.docker.internal:3002/local"
        );
    }

    #[test]
    fn env_files_debug_without_values() {
        let file = EnvFile::parse(
            r#"{"Parameters": {"ROOMCAST_JWT_SECRET": "hunter2-hunter2"}, "F": {"K": "v-secret"}}"#,
        )
        .unwrap();
        let shown = format!("{file:?}");
        assert!(
            shown.contains("ROOMCAST_JWT_SECRET") && shown.contains('K'),
            "{shown}"
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("v-secret"),
            "{shown}"
        );
    }

    #[test]
    fn env_files_and_dotenv() {
        let file =
            EnvFile::parse(r#"{"Parameters": {"N": 3, "B": true}, "F": {"X": "y"}}"#).unwrap();
        assert_eq!(file.global["N"], "3");
        assert_eq!(file.global["B"], "true");
        assert_eq!(file.functions["F"]["X"], "y");
        assert_eq!(
            EnvFile::parse(r#"{"F": {"X": {"nested": "secret"}}}"#),
            Err(EnvFileError::Value {
                section: "F".into(),
                name: "X".into()
            })
        );
        assert_eq!(
            EnvFile::parse(r#"{"F": 1}"#),
            Err(EnvFileError::Section("F".into()))
        );
        let broken = EnvFile::parse(r#"{"F": {"X": "hunter2""#).unwrap_err();
        assert!(matches!(broken, EnvFileError::Json(_)), "{broken:?}");
        assert!(!broken.to_string().contains("hunter2"), "{broken}");
        let env: BTreeMap<String, String> = [
            ("A", "plain"),
            ("B", "two words"),
            ("C", r#"{"a":"$b"}"#),
            ("D", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let (text, unwritable) = dotenv(&env);
        assert_eq!(text, "A=plain\nB='two words'\nC='{\"a\":\"$b\"}'\nD=''\n");
        assert!(unwritable.is_empty());
        let odd = BTreeMap::from([("Q".to_owned(), "'\"`".to_owned())]);
        assert_eq!(dotenv(&odd), (String::new(), vec!["Q".to_owned()]));
    }

    #[test]
    fn merged_environment_reports_disagreements() {
        let per: BTreeMap<String, BTreeMap<String, String>> = [
            ("A", [("X", "1"), ("Y", "same")]),
            ("B", [("X", "2"), ("Y", "same")]),
        ]
        .into_iter()
        .map(|(id, vars)| {
            (
                id.to_owned(),
                vars.into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            )
        })
        .collect();
        let (merged, diagnostics) = merged_environment(&per);
        assert_eq!(merged["X"], "1");
        assert_eq!(diagnostics.len(), 1);
        assert!(
            diagnostics[0]
                .to_string()
                .starts_with("B: X differs from A's")
        );
    }
}
