//! The planner's model, which backends implement: resources and their specs (`spec`), what a
//! provider observed of them (`observed`), the desired state a plan's intents were lowered into
//! (`desired`), what only a backend knows about changing its resources (`rules`), and the
//! changes a plan makes (`change`). It imports nothing of `provider/` or `ops/`: backends speak
//! its terms.

pub mod change;
pub mod desired;
pub mod kind;
pub mod observed;
pub mod rules;
pub mod spec;

pub use observed::{Disruption, LiveResource, Observed, OwnerMark, Pending, Power, ReadinessQuery};
