//! What tells others how a chat stands rather than saying something: delivery and read
//! receipts, the account's read-receipt setting, the chat's disappearing timer, and typing
//! indicators. docs/messenger-basics.md
//! has the rules and the bound on receipts.

mod disappearing;
mod receipts;
mod settings;
mod typing;

pub(crate) use receipts::accept_receipt;
pub(crate) use settings::accept_settings;
pub(crate) use typing::open_typing;
