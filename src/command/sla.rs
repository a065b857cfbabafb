//! `!sla [at-risk|breached]`: targets at risk and breached, with the time
//! left or over (leads).

use super::CmdError;
use crate::bot::Ctx;
use crate::config::Role;
use crate::sla::ReportFilter;

#[derive(Debug, Clone, PartialEq)]
pub struct Sla {
    pub filter: ReportFilter,
}

impl Sla {
    pub fn parse(args: &str) -> Result<Self, String> {
        let filter = match args.trim().to_ascii_lowercase().as_str() {
            "" | "all" => ReportFilter::All,
            "at-risk" | "at_risk" | "risk" => ReportFilter::AtRisk,
            "breached" | "breach" => ReportFilter::Breached,
            other => return Err(format!("Unknown filter `{other}`.")),
        };
        Ok(Sla { filter })
    }

    pub(crate) fn apply(self, ctx: &mut Ctx) -> Result<(), CmdError> {
        ctx.require(Role::Lead, "sla")?;
        let text = ctx.bot.sla().report(self.filter)?;
        ctx.reply(text)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        assert_eq!(Sla::parse("").unwrap().filter, ReportFilter::All);
        assert_eq!(Sla::parse("at-risk").unwrap().filter, ReportFilter::AtRisk);
        assert_eq!(
            Sla::parse("Breached").unwrap().filter,
            ReportFilter::Breached
        );
        assert!(Sla::parse("late").is_err());
    }
}
