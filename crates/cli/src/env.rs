//! `roomcast env`: prints the environment a SAM template (plus an env file) gives
//! its functions, as KEY=value lines for `cargo lambda watch --env-file`; and the
//! template reading that `roomcast dev --template` shares.

use anyhow::Context as _;
use clap::Args;
use roomcast_local::template::{
    Diagnostic, EnvFile, Environments, Pseudo, Template, dotenv, merged_environment,
    resolve_environment,
};

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The SAM template.
    #[arg(long, value_name = "PATH", default_value = "template.yaml")]
    template: String,
    /// Local overrides in `sam local --env-vars` JSON format.
    #[arg(long, value_name = "PATH")]
    env_file: Option<String>,
    /// Only this function's variables (a logical id); default: every function's,
    /// merged, as `cargo lambda watch` gives all functions one environment.
    #[arg(long, value_name = "LOGICAL_ID")]
    function: Option<String>,
    /// The region `AWS::Region` resolves to.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
}

/// Reads the template and env file and resolves every function's environment;
/// the diagnostics say what was left out and why.
pub fn sam_environment(
    template: &str,
    env_file: Option<&str>,
    region: &str,
) -> anyhow::Result<(Template, Environments, Vec<Diagnostic>)> {
    let template = Template::from_file(template)?;
    let env_file = env_file
        .map(EnvFile::from_file)
        .transpose()?
        .unwrap_or_default();
    let pseudo = Pseudo {
        region: region.to_owned(),
        stack_name: "local".to_owned(),
    };
    let (environment, mut diagnostics) = resolve_environment(&template, &env_file, &pseudo);
    diagnostics.splice(0..0, template.diagnostics.iter().cloned());
    Ok((template, environment, diagnostics))
}

pub fn run(args: EnvArgs) -> anyhow::Result<()> {
    let (_, environment, mut diagnostics) =
        sam_environment(&args.template, args.env_file.as_deref(), &args.region)?;
    let env = match &args.function {
        Some(id) => environment
            .get(id)
            .cloned()
            .with_context(|| format!("the template has no function {id}"))?,
        None => {
            let (merged, conflicts) = merged_environment(&environment);
            diagnostics.extend(conflicts);
            merged
        }
    };
    let (text, unwritable) = dotenv(&env);
    print!("{text}");
    for d in &diagnostics {
        eprintln!("roomcast env: {d}");
    }
    if !unwritable.is_empty() {
        anyhow::bail!(
            "cannot write {} in the env-file format (values holding ', \" and `, or \\n)",
            unwritable.join(", ")
        );
    }
    Ok(())
}
