//! Rendering reply drafts from playbook templates.
//!
//! Reply templates are minijinja templates compiled once, when the playbook
//! set is loaded, into the set's environment under `<id>.<lang>`. A render
//! gets the extracted fields plus `customer_name`; a variable with no value
//! renders as nothing, so templates can say `{% if amount %}…{% endif %}`.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior, Value};

use crate::lang::Lang;

use super::load::PlaybookSet;

/// Names the environment provides itself; templates may use them freely.
pub(crate) const TEMPLATE_GLOBALS: [&str; 5] = ["range", "dict", "namespace", "debug", "loop"];

/// Why a reply could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// No playbook has this id.
    #[error("unknown playbook `{0}`")]
    UnknownPlaybook(String),
    /// The template failed at render time (e.g. a filter got a bad value).
    #[error("rendering {playbook}.{lang}: {source}")]
    Template {
        playbook: String,
        lang: Lang,
        #[source]
        source: minijinja::Error,
    },
}

/// The environment every playbook template is compiled in, at check time and
/// at load time alike, so both agree on syntax and globals.
pub(crate) fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // Missing fields render empty and are falsy in `{% if %}`: a draft with a
    // gap is more useful to an agent than no draft.
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    // Replies are chat text, not HTML.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_keep_trailing_newline(false);
    env
}

/// Name of a compiled reply template inside the set's environment.
pub(crate) fn template_name(id: &str, lang: Lang) -> String {
    format!("{id}.{lang}")
}

/// Renders `playbook`'s reply in `lang`.
pub(crate) fn render_reply(
    set: &PlaybookSet,
    playbook: &str,
    lang: Lang,
    fields: &BTreeMap<String, String>,
    customer_name: Option<&str>,
) -> Result<String, RenderError> {
    if set.get(playbook).is_none() {
        return Err(RenderError::UnknownPlaybook(playbook.to_string()));
    }
    let wrap = |source| RenderError::Template {
        playbook: playbook.to_string(),
        lang,
        source,
    };
    let tmpl = set
        .env
        .get_template(&template_name(playbook, lang))
        .map_err(wrap)?;
    let mut ctx: BTreeMap<&str, Value> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), Value::from(v.as_str())))
        .collect();
    if let Some(name) = customer_name.map(str::trim).filter(|n| !n.is_empty()) {
        ctx.insert("customer_name", Value::from(name));
    }
    let out = tmpl.render(ctx).map_err(wrap)?;
    Ok(out.trim().to_string())
}
