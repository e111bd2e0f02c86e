//! What the guards (`prevent_destroy`, `create_before_destroy`) forbid among a plan's changes.

use super::*;

/// What the guards forbid among `changes`: the plan's, for what it declares; for what it does
/// not declare (or when it could not be read), the guard recorded in the resource's mark.
pub(super) fn guard_problems(
    changes: &[Change],
    desired: &Desired,
    observed: &Observed,
    rules: &dyn Rules,
) -> Vec<String> {
    let mut problems = Vec::new();
    for c in changes {
        let guards = desired.guards_of(&c.id);
        let doing = match c.action {
            Action::Delete => "delete",
            Action::Replace => "replace",
            _ => continue,
        };
        let why = c
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let recorded = !desired.guards.contains_key(&c.id)
            && observed
                .get(&c.id)
                .and_then(|l| l.owner.as_ref())
                .is_some_and(|m| m.prevent_destroy);
        if recorded {
            problems.push(format!(
                "{} was created with `prevent_destroy` (recorded on the resource), and this plan \
                 would {doing} it{why}; if that is what you want, apply the plan with it still \
                 declared but without `prevent_destroy` first",
                c.id
            ));
        } else if guards.prevent_destroy {
            problems.push(format!(
                "{} has `prevent_destroy`, and this plan would {doing} it{why}; \
                 if that is what you want, remove `prevent_destroy` from the plan first",
                c.id
            ));
        } else if guards.create_before_destroy
            && c.action == Action::Replace
            && !rules.capabilities().replace_side_by_side
        {
            problems.push(format!(
                "{} has `create_before_destroy`, but it must be replaced{why}, and names on \
                 this provider are unique: its replacement cannot exist beside it. Rename it \
                 in the plan (the new one is then made first), or remove `create_before_destroy`",
                c.id
            ));
        }
    }
    problems
}
