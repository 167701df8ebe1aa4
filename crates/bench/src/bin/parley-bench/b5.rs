//! B5: what Parley adds to openmls per message, and large-group operations.

use std::time::{Duration, Instant};

use anyhow::Result;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use parley_bench::mls::{
    big_group_members, create_config, join_config, key_package, member, receive, send,
    two_member_group,
};
use parley_mls::suite;

use super::*;

/// B5: what Parley adds to openmls per message (payload, franking tag, its check), and the cost
/// of large-group operations.
pub(crate) fn b5(rows: &mut Vec<Row>, messages: usize, group_size: usize) -> Result<()> {
    let ciphersuite = suite::DEFAULT_CIPHERSUITE;
    let alice = member(0, ciphersuite)?;
    let bob = member(1, ciphersuite)?;
    let (mut a, mut b) =
        two_member_group(&alice, &bob, key_package(&bob, ciphersuite)?, ciphersuite)?;
    let text = "x".repeat(120);

    // Interleave raw and Parley rounds so that machine noise hits both alike.
    let (mut raw_send, mut parley_send, mut raw_receive, mut parley_receive) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    let raw_payload = vec![7u8; 200];
    for _ in 0..messages / 100 {
        let started = Instant::now();
        let raw: Vec<Vec<u8>> = (0..100)
            .map(|_| {
                a.create_message(&alice.provider, &alice.signer, &raw_payload)
                    .map_err(anyhow::Error::from)?
                    .to_bytes()
                    .map_err(anyhow::Error::from)
            })
            .collect::<Result<_>>()?;
        raw_send += started.elapsed();
        let started = Instant::now();
        for bytes in &raw {
            let message = MlsMessageIn::tls_deserialize_exact(bytes.as_slice())?
                .try_into_protocol_message()?;
            b.process_message(&bob.provider, message)?;
        }
        raw_receive += started.elapsed();
        let started = Instant::now();
        let franked: Vec<Vec<u8>> = (0..100)
            .map(|_| send(&alice, &mut a, &text))
            .collect::<Result<_>>()?;
        parley_send += started.elapsed();
        let started = Instant::now();
        for bytes in &franked {
            receive(&bob, &mut b, bytes)?;
        }
        parley_receive += started.elapsed();
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / (messages / 100 * 100) as f64;
    rows.push(Row {
        figure: "B5 send with franking vs raw create_message".into(),
        parley: per(parley_send),
        reference: Some(per(raw_send)),
        unit: "µs/msg",
        target: Some("≤ 1.15x"),
    });
    rows.push(Row {
        figure: "B5 receive with verification vs raw process_message".into(),
        parley: per(parley_receive),
        reference: Some(per(raw_receive)),
        unit: "µs/msg",
        target: Some("≤ 1.15x"),
    });

    let (creator, joiners, packages) = big_group_members(group_size, ciphersuite)?;
    let mut group = MlsGroup::new(
        &creator.provider,
        &creator.signer,
        &create_config(ciphersuite)?,
        creator.credential.clone(),
    )?;
    let started = Instant::now();
    let (_, welcome, _) = group.add_members(&creator.provider, &creator.signer, &packages)?;
    group.merge_pending_commit(&creator.provider)?;
    rows.push(Row {
        figure: format!("B5 add {} members in one commit", group_size - 1),
        parley: started.elapsed().as_secs_f64() * 1e3,
        reference: None,
        unit: "ms",
        target: None,
    });
    let welcome = match MlsMessageIn::from(welcome).extract() {
        MlsMessageBodyIn::Welcome(w) => w,
        _ => anyhow::bail!("no welcome"),
    };
    let last = joiners.last().ok_or_else(|| anyhow::anyhow!("no joiner"))?;
    let started = Instant::now();
    StagedWelcome::new_from_welcome(
        &last.provider,
        &join_config(),
        welcome,
        Some(group.export_ratchet_tree().into()),
    )?
    .into_group(&last.provider)?;
    rows.push(Row {
        figure: format!("B5 join a {group_size}-member group"),
        parley: started.elapsed().as_secs_f64() * 1e3,
        reference: None,
        unit: "ms",
        target: None,
    });
    Ok(())
}
