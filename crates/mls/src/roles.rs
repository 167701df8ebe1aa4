//! Group roles and the rule that every commit must follow.
//!
//! The creator of a group is its first admin. Any member may add members; only admins may remove
//! others or change the admin list; anyone may leave (a Remove proposal for their own leaf, which
//! another member commits). The roles live in a GroupContext extension, so they change only by
//! commit and every member and the server see the same list.
//!
//! [`authorize_commit`] is the single place this rule is written. The server calls it on every
//! public commit before accepting it; clients call it on every commit before merging it.

use std::collections::{BTreeSet, HashMap};

use openmls::prelude::{
    Extension, Extensions, GroupContext, LeafNode, LeafNodeIndex, Member, Proposal, Sender,
    StagedCommit, UnknownExtension,
};
use parley_protocol::{v1, Username};
use prost::Message;

use crate::identity::{CertifiedDevice, DeviceIdentity};
use crate::rotation::{self, AccountRotation};
use crate::suite::ROLES_EXTENSION_TYPE;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("commit sender is not a member of the group")]
    NotAMember,
    #[error("external commits are not allowed")]
    ExternalCommit,
    #[error("only a certified device of an account already in the group may join it by itself")]
    ExternalJoinNotAccount,
    #[error("only an admin may remove another member")]
    RemoveNotAdmin,
    #[error("only an admin may change the group's admins")]
    RolesNotAdmin,
    #[error("a group must keep at least one admin who is a member")]
    NoAdminLeft,
    #[error("the group's roles extension is missing or malformed")]
    MalformedRoles,
    #[error("member credential is invalid: {0}")]
    Credential(String),
    #[error("commit contains a proposal Parley does not allow ({0})")]
    ForbiddenProposal(&'static str),
    #[error("a leaf the commit brings in is not certified by its account: {0}")]
    Uncertified(String),
    #[error("an updated leaf must stay the same device of the same account")]
    IdentityChanged,
    #[error("the commit's account-key rotations do not parse or verify")]
    MalformedRotation,
}

/// The admins of a group, by username.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Roles {
    admins: BTreeSet<Username>,
}

impl Roles {
    pub fn with_admin(admin: Username) -> Self {
        Roles {
            admins: BTreeSet::from([admin]),
        }
    }

    pub fn is_admin(&self, username: &Username) -> bool {
        self.admins.contains(username)
    }

    pub fn admins(&self) -> impl Iterator<Item = &Username> {
        self.admins.iter()
    }

    pub fn with_added_admin(&self, admin: Username) -> Self {
        let mut admins = self.admins.clone();
        admins.insert(admin);
        Roles { admins }
    }

    pub fn from_group_context(context: &GroupContext) -> Result<Self, PolicyError> {
        Self::from_extensions(context.extensions())
    }

    pub fn from_extensions(extensions: &Extensions<GroupContext>) -> Result<Self, PolicyError> {
        let raw = extensions
            .unknown(ROLES_EXTENSION_TYPE)
            .ok_or(PolicyError::MalformedRoles)?;
        let wire =
            v1::GroupRoles::decode(raw.0.as_slice()).map_err(|_| PolicyError::MalformedRoles)?;
        let admins = wire
            .admins
            .iter()
            .map(|name| Username::parse(name).map_err(|_| PolicyError::MalformedRoles))
            .collect::<Result<BTreeSet<_>, _>>()?;
        Ok(Roles { admins })
    }

    pub fn to_extension(&self) -> Extension {
        let wire = v1::GroupRoles {
            admins: self.admins.iter().map(|a| a.to_string()).collect(),
        };
        Extension::Unknown(ROLES_EXTENSION_TYPE, UnknownExtension(wire.encode_to_vec()))
    }
}

/// An external commit (RFC 9420, 12.4.3.2) is how a restored device rejoins its account's chats
/// when no device of the account is left to add it. It may bring in only its own leaf, certified
/// under the account key of a device of the same account that is already a member (or a key
/// that account rotated to from it, by the chain the commit carries), and change nothing else:
/// no removals, no roles, no other proposals.
fn authorize_external_join(
    members_before: &[Member],
    extensions_before: &Extensions<GroupContext>,
    staged: &StagedCommit,
    rotations: &[AccountRotation],
) -> Result<(), PolicyError> {
    for proposal in staged.queued_proposals() {
        match proposal.proposal() {
            Proposal::ExternalInit(_) => {}
            Proposal::Remove(_) => return Err(PolicyError::ForbiddenProposal("remove")),
            _ => return Err(PolicyError::ForbiddenProposal("other")),
        }
    }
    let joiner = staged
        .update_path_leaf_node()
        .ok_or(PolicyError::ExternalJoinNotAccount)?;
    let joiner = CertifiedDevice::verify_leaf(joiner)
        .map_err(|e| PolicyError::Uncertified(e.to_string()))?;
    let account_present = members_before.iter().any(|m| {
        CertifiedDevice::verify(&m.credential, &m.signature_key).is_ok_and(|member| {
            member.identity.username == joiner.identity.username
                && member.identity.device_id != joiner.identity.device_id
                && (member.account_key == joiner.account_key
                    || rotation::follow(
                        &joiner.identity.username,
                        &member.account_key,
                        rotations,
                        &joiner.account_key,
                    )
                    .is_ok())
        })
    });
    if !account_present {
        return Err(PolicyError::ExternalJoinNotAccount);
    }
    if Roles::from_group_context(staged.group_context())?
        != Roles::from_extensions(extensions_before)?
    {
        return Err(PolicyError::RolesNotAdmin);
    }
    Ok(())
}

fn usernames_by_leaf(
    members: impl Iterator<Item = Member>,
) -> Result<HashMap<LeafNodeIndex, Username>, PolicyError> {
    members
        .map(|m| {
            DeviceIdentity::from_credential(&m.credential)
                .map(|id| (m.index, id.username))
                .map_err(|e| PolicyError::Credential(e.to_string()))
        })
        .collect()
}

/// The leaves a commit brings in or replaces: added KeyPackages, updates, the committer's path.
pub fn introduced_leaves(staged: &StagedCommit) -> impl Iterator<Item = &LeafNode> {
    staged
        .queued_proposals()
        .filter_map(|queued| match queued.proposal() {
            Proposal::Add(add) => Some(add.key_package().leaf_node()),
            Proposal::Update(update) => Some(update.leaf_node()),
            _ => None,
        })
        .chain(staged.update_path_leaf_node())
}

/// The leaves a commit replaces, each with the leaf that was there: Update proposals (by their
/// proposer's leaf) and the committer's update path.
fn replaced_leaves(
    staged: &StagedCommit,
    committer: LeafNodeIndex,
) -> impl Iterator<Item = (LeafNodeIndex, &LeafNode)> {
    staged
        .queued_proposals()
        .filter_map(|queued| match (queued.proposal(), queued.sender()) {
            (Proposal::Update(update), Sender::Member(leaf)) => Some((*leaf, update.leaf_node())),
            _ => None,
        })
        .chain(staged.update_path_leaf_node().map(|leaf| (committer, leaf)))
}

/// The account-key rotations a commit's authenticated data carries ([`v1::CommitAad`]).
pub fn rotations_in_aad(aad: &[u8]) -> Result<Vec<AccountRotation>, PolicyError> {
    if aad.is_empty() {
        return Ok(Vec::new());
    }
    let wire = v1::CommitAad::decode(aad).map_err(|_| PolicyError::MalformedRotation)?;
    rotation::decode_chain(&wire.rotations).map_err(|_| PolicyError::MalformedRotation)
}

/// Decides whether `staged`, sent by `sender`, may be merged into a group whose members and
/// GroupContext extensions (before the commit) are given. Every leaf it introduces must be
/// certified by the account key its credential carries; whether that is the right key for the
/// account is the caller's to check (the server against the registered key, a client against
/// its pin), over [`introduced_leaves`]. `rotations` are those the commit's authenticated data
/// carries ([`rotations_in_aad`]).
pub fn authorize_commit(
    members_before: impl Iterator<Item = Member>,
    extensions_before: &Extensions<GroupContext>,
    sender: &Sender,
    staged: &StagedCommit,
    rotations: &[AccountRotation],
) -> Result<(), PolicyError> {
    let members_before: Vec<Member> = members_before.collect();
    let names = usernames_by_leaf(members_before.iter().cloned())?;
    let roles_before = Roles::from_extensions(extensions_before)?;
    let committer_leaf = match sender {
        Sender::Member(leaf) => *leaf,
        Sender::NewMemberCommit => {
            return authorize_external_join(&members_before, extensions_before, staged, rotations)
        }
        Sender::External(_) | Sender::NewMemberProposal => return Err(PolicyError::NotAMember),
    };
    let committer = names.get(&committer_leaf).ok_or(PolicyError::NotAMember)?;
    for leaf in introduced_leaves(staged) {
        CertifiedDevice::verify_leaf(leaf).map_err(|e| PolicyError::Uncertified(e.to_string()))?;
    }
    // A leaf that is updated stays the device it was: same account, same device id, and the
    // same account key or one the account rotated to from it (a chain both keys signed). Else
    // a member could relabel its own leaf as someone else's and take their place and roles.
    for (index, leaf) in replaced_leaves(staged, committer_leaf) {
        let before = members_before
            .iter()
            .find(|m| m.index == index)
            .ok_or(PolicyError::NotAMember)?;
        let old = CertifiedDevice::verify(&before.credential, &before.signature_key)
            .map_err(|e| PolicyError::Credential(e.to_string()))?;
        let new = CertifiedDevice::verify_leaf(leaf)
            .map_err(|e| PolicyError::Uncertified(e.to_string()))?;
        let rotated = || {
            rotation::follow(
                &old.identity.username,
                &old.account_key,
                rotations,
                &new.account_key,
            )
            .is_ok()
        };
        if old.identity != new.identity || (old.account_key != new.account_key && !rotated()) {
            return Err(PolicyError::IdentityChanged);
        }
    }

    for proposal in staged.queued_proposals() {
        match proposal.proposal() {
            Proposal::Add(_) | Proposal::Update(_) | Proposal::Remove(_) => {}
            Proposal::GroupContextExtensions(_) => {}
            Proposal::PreSharedKey(_) => return Err(PolicyError::ForbiddenProposal("psk")),
            Proposal::ReInit(_) => return Err(PolicyError::ForbiddenProposal("reinit")),
            Proposal::ExternalInit(_) => return Err(PolicyError::ExternalCommit),
            _ => return Err(PolicyError::ForbiddenProposal("other")),
        }
    }

    for removal in staged.remove_proposals() {
        let removed = removal.remove_proposal().removed();
        let removed_name = names.get(&removed);
        let allowed = match removal.sender() {
            // Leaving: a member proposes its own removal, or removes another device of its own.
            Sender::Member(proposer) if *proposer == removed => true,
            Sender::Member(proposer) => match names.get(proposer) {
                Some(name) => roles_before.is_admin(name) || Some(name) == removed_name,
                None => false,
            },
            // The server, as an external sender, removes suspended accounts (moderation).
            Sender::External(_) => true,
            Sender::NewMemberProposal | Sender::NewMemberCommit => false,
        };
        if !allowed {
            return Err(PolicyError::RemoveNotAdmin);
        }
    }

    let roles_after = Roles::from_group_context(staged.group_context())?;
    if roles_after != roles_before {
        if !roles_before.is_admin(committer) {
            return Err(PolicyError::RolesNotAdmin);
        }
        // A new admin must be someone in the group after this commit.
        let removed: BTreeSet<LeafNodeIndex> = staged
            .remove_proposals()
            .map(|r| r.remove_proposal().removed())
            .collect();
        let remaining: BTreeSet<&Username> = names
            .iter()
            .filter(|(leaf, _)| !removed.contains(leaf))
            .map(|(_, n)| n)
            .collect();
        if !roles_after.admins().any(|a| remaining.contains(a)) {
            return Err(PolicyError::NoAdminLeft);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_extension() {
        let roles = Roles::with_admin(Username::parse("alice").unwrap())
            .with_added_admin(Username::parse("bob").unwrap());
        let extensions = Extensions::<GroupContext>::single(roles.to_extension()).unwrap();
        assert_eq!(Roles::from_extensions(&extensions).unwrap(), roles);
    }

    #[test]
    fn a_missing_roles_extension_is_an_error() {
        let extensions = Extensions::<GroupContext>::empty();
        assert_eq!(
            Roles::from_extensions(&extensions),
            Err(PolicyError::MalformedRoles)
        );
    }
}
