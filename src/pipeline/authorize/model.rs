//! The casbin side of compilation: parsing `model.conf` with casbin, refusing
//! any model whose semantics differ from the one the decision table
//! implements, and building a casbin `Enforcer` over a rule set (used for its
//! role manager when compiling, and as the oracle in the differential tests).

use super::rules::canonical_text;
use super::{PolicyError, PolicyRule};
use casbin::{CoreApi, DefaultModel, Enforcer, Model, StringAdapter};

/// The only model the decision table implements. A model is accepted when
/// casbin parses it into the same sections with the same values, ignoring
/// whitespace and comments; anything else (another matcher, a deny effect,
/// domains, extra `p2`/`g2` types, ...) is refused, so the compiled table can
/// never silently diverge from what casbin would decide.
pub const SUPPORTED_MODEL: &str = r#"
[request_definition]
r = sub, obj, act, purpose

[policy_definition]
p = sub, obj, act, purpose

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act && (r.purpose == p.purpose || p.purpose == "*")
"#;

/// Casbin's APIs are async but, with an in-memory model and adapter, never
/// wait on I/O: driving them on the current thread keeps compilation usable
/// from sync code (CLI, tests) and from `spawn_blocking` alike.
fn run<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

pub(super) fn parse_model(text: &str) -> Result<DefaultModel, PolicyError> {
    let model = run(DefaultModel::from_str(text)).map_err(|e| PolicyError::Model(e.to_string()))?;
    let supported = run(DefaultModel::from_str(SUPPORTED_MODEL))
        .map_err(|e| PolicyError::Model(e.to_string()))?;
    let got = shape(&model);
    let want = shape(&supported);
    if got != want {
        let diff = want
            .iter()
            .zip(
                got.iter()
                    .chain(std::iter::repeat(&(String::new(), String::new()))),
            )
            .find(|(w, g)| w != g)
            .map(|((key, value), _)| format!("expected {key} = {value}"))
            .unwrap_or_else(|| "unexpected extra definitions".to_owned());
        return Err(PolicyError::UnsupportedModel(diff));
    }
    Ok(model)
}

/// (key, whitespace-free value) for every assertion, sorted.
fn shape(model: &DefaultModel) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = model
        .get_model()
        .values()
        .flat_map(|section| section.iter())
        .map(|(key, a)| {
            let value: String = a.value.chars().filter(|c| !c.is_whitespace()).collect();
            (key.clone(), value)
        })
        .collect();
    out.sort();
    out
}

/// A casbin enforcer over exactly these (already validated) rules.
pub(crate) fn build_enforcer(
    model_text: &str,
    rules: &[PolicyRule],
) -> Result<Enforcer, PolicyError> {
    let model = parse_model(model_text)?;
    // Validated values contain no commas or quotes, so the CSV round trip
    // through casbin's own reader is exact.
    let adapter = StringAdapter::new(canonical_text(rules));
    run(Enforcer::new(model, adapter)).map_err(|e| PolicyError::Casbin(e.to_string()))
}
