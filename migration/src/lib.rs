//! Tribune's scheduler and migration planner (DESIGN.md: `migration/`), as pure functions over
//! a snapshot of the cluster ([`ClusterView`]): no I/O, no clock (`now` comes in), no
//! randomness; ties are broken by id, so the same snapshot gives the same answer on every
//! controller.
//!
//! - `demand.rs`: [`Demand`], an amount of every schedulable resource;
//! - `view.rs`: hosts, placed enclaves and what an enclave asks for ([`EnclaveSpec`]);
//! - `filter.rs`: may it land there, and if not why ([`Rejection`]);
//! - `place.rs`: scoring (bin-packing or spreading, fragmentation, measured load), placement,
//!   preemption of strictly lower priorities, and the explanation when nothing fits;
//! - `target.rs`: the target of a `migrate` decision, with headroom, cool-down and a
//!   cluster-wide budget;
//! - `first_fit.rs`: the baseline `tribune bench schedule` compares with, and the quality
//!   measures (hosts used, stranded capacity).
//!
//! Invariants (property-tested in `tests/properties.rs`): no placement makes a host's
//! reserved guarantees exceed its capacity on any resource; preemption displaces only strictly
//! lower priorities, and only when nothing fits without it; results are deterministic.

pub mod demand;
pub mod filter;
pub mod first_fit;
pub mod place;
pub mod synthetic;
pub mod target;
pub mod view;

pub use demand::{Demand, Resource};
pub use filter::{Freshness, Rejection};
pub use place::{Displaced, Placement, Unplaceable, choose, place, place_all};
pub use target::{MigrationConfig, MigrationFacts, NotNow, TargetRefused, check_target, target};
pub use view::{ClusterView, EnclaveSpec, HostState, HostView, Placed, Schedulable, Strategy};
