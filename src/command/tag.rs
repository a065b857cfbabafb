//! `!tag <tag>`: add a tag.

use super::CmdError;
use crate::bot::Ctx;
use crate::case::EventKind;
use crate::config::Role;

#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    pub tag: String,
}

impl Tag {
    pub fn parse(args: &str) -> Result<Self, String> {
        let tag = args.trim().trim_start_matches('#').to_lowercase();
        if tag.is_empty() || tag.contains(char::is_whitespace) || tag.len() > 40 {
            return Err("A tag is one word of at most 40 characters.".into());
        }
        Ok(Tag { tag })
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        ctx.require(Role::Agent, "tag")?;
        let tag = self.tag;
        ctx.change(
            "tag",
            vec![(EventKind::Tagged { tag: tag.clone() }, None)],
            |c| {
                let all: Vec<_> = c.tags.iter().map(|t| format!("#{t}")).collect();
                format!("🏷️ **{}** tagged #{tag} (tags: {}).", c.id, all.join(" "))
            },
        )?;
        Ok(())
    }
}
