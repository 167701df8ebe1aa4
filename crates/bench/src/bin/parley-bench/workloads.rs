//! B1 to B4, each system beside the other: the rate ramp, rows and the four workloads.

use std::time::Duration;

use anyhow::Result;
use parley_bench::parley::{self, Deployment};
use parley_bench::xmpp;

use super::*;

/// B1's ramp: rates grow by half until one fails (p99 over 50 ms, or anything lost or
/// refused), then four steps between the last that held and the first that failed. Returns the
/// highest rate that held, with its figures.
pub(crate) async fn ramp(
    name: &str,
    start: u32,
    hold: Duration,
    load: &mut impl RelayLoad,
) -> Result<Option<(u32, Relay)>> {
    let mut best: Option<(u32, Relay)> = None;
    let mut rate = start;
    let failed_at = loop {
        let figures = load.relay(rate, hold).await?;
        println!("  {name:<9} {rate:>7} msgs/s: {figures}");
        if !figures.held() {
            break rate;
        }
        best = Some((rate, figures));
        rate = rate * 3 / 2;
    };
    let low = best.as_ref().map_or(0, |(r, _)| *r);
    let step = (failed_at - low) / 5;
    for i in 1..5 {
        let rate = low + step * i;
        if step == 0 || rate == 0 {
            break;
        }
        let figures = load.relay(rate, hold).await?;
        println!("  {name:<9} {rate:>7} msgs/s: {figures}");
        if !figures.held() {
            break;
        }
        best = Some((rate, figures));
    }
    Ok(best)
}

/// Either system's B1 load.
pub(crate) trait RelayLoad {
    async fn relay(&mut self, rate: u32, hold: Duration) -> Result<Relay>;
}

impl RelayLoad for xmpp::XmppPairs {
    async fn relay(&mut self, rate: u32, hold: Duration) -> Result<Relay> {
        let f = self.run(rate, hold).await?;
        Ok(Relay {
            sent: f.sent,
            delivered: f.delivered,
            refused: 0,
            p50_ms: f.p50_ms,
            p99_ms: f.p99_ms,
            cpu_s_per_1000: f.server_cpu_s_per_1000,
            outside_store_us: None,
            load_core_busy: None,
        })
    }
}

impl RelayLoad for parley::Pairs {
    async fn relay(&mut self, rate: u32, hold: Duration) -> Result<Relay> {
        let f = self.run(rate, hold).await?;
        Ok(Relay {
            sent: f.sent,
            delivered: f.delivered,
            refused: f.sent - f.accepted,
            p50_ms: f.p50_ms,
            p99_ms: f.p99_ms,
            cpu_s_per_1000: f.server_cpu_s_per_1000,
            outside_store_us: Some(f.server_cpu.outside_store_us(f.sent)),
            load_core_busy: Some(f.load_core_busy),
        })
    }
}

/// B1 figures of either system at one rate.
pub(crate) struct Relay {
    pub(crate) sent: u64,
    pub(crate) delivered: u64,
    pub(crate) refused: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) cpu_s_per_1000: f64,
    /// Parley only: server CPU per message outside its SQLite threads.
    pub(crate) outside_store_us: Option<f64>,
    pub(crate) load_core_busy: Option<f64>,
}

impl Relay {
    pub(crate) fn held(&self) -> bool {
        self.p99_ms <= 50.0 && self.delivered == self.sent && self.refused == 0
    }
}

impl std::fmt::Display for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {} delivered {} refused {} p50 {:.2} ms p99 {:.2} ms, server CPU {:.3} s/1000",
            self.sent, self.delivered, self.refused, self.p50_ms, self.p99_ms, self.cpu_s_per_1000
        )?;
        if let (Some(outside), Some(busy)) = (self.outside_store_us, self.load_core_busy) {
            write!(
                f,
                " ({outside:.1} µs/msg outside the store), load core {:.0} % busy",
                busy * 100.0
            )?;
        }
        Ok(())
    }
}

pub(crate) fn row(
    rows: &mut Vec<Row>,
    figure: impl Into<String>,
    parley: f64,
    reference: Option<f64>,
    unit: &'static str,
    target: Option<&'static str>,
) {
    rows.push(Row {
        figure: figure.into(),
        parley,
        reference,
        unit,
        target,
    });
}

pub(crate) async fn b1(plan: &Plan, rows: &mut Vec<Row>) -> Result<()> {
    println!(
        "B1: 1:1 relay, {} users in pairs, 200-byte messages, open loop, each rate held {} s",
        plan.users,
        plan.hold.as_secs()
    );
    let hold = plan.hold;
    if let Some(rates) = &plan.rates {
        let deployment = plan.nodes.map_or(Deployment::Single, Deployment::Cluster);
        let mut pairs = parley::Pairs::start(deployment, plan.users).await?;
        for &rate in rates {
            println!(
                "  Parley    {rate:>7} msgs/s: {}",
                pairs.relay(rate, hold).await?
            );
        }
        return Ok(());
    }
    let ejabberd = if plan.no_peers {
        None
    } else {
        let server = xmpp::Ejabberd::start(0)?;
        let mut pairs = xmpp::XmppPairs::connect(&server, plan.users).await?;
        ramp("ejabberd", 2_000, hold, &mut pairs).await?
    };
    let parley = {
        let mut pairs = parley::Pairs::start(Deployment::Single, plan.users).await?;
        ramp("Parley", 2_000, hold, &mut pairs).await?
    };
    let cluster = if plan.no_cluster {
        None
    } else {
        let mut pairs = parley::Pairs::start(CLUSTER, plan.users).await?;
        ramp("2 nodes", 1_000, hold, &mut pairs).await?
    };
    let rate = |r: &Option<(u32, Relay)>| r.as_ref().map_or(0.0, |(rate, _)| *rate as f64);
    row(
        rows,
        "B1 1:1 relay: highest rate at p99 <= 50 ms, no loss",
        rate(&parley),
        Some(rate(&ejabberd)),
        "msgs/s",
        Some(">= 2.00 (peer: ejabberd)"),
    );
    if let (Some((_, p)), Some((_, e))) = (&parley, &ejabberd) {
        row(
            rows,
            "B1 p50 delivery latency at that rate",
            p.p50_ms,
            Some(e.p50_ms),
            "ms",
            None,
        );
        row(
            rows,
            "B1 p99 delivery latency at that rate",
            p.p99_ms,
            Some(e.p99_ms),
            "ms",
            Some("<= 50 ms"),
        );
        row(
            rows,
            "B1 server CPU per 1,000 messages",
            p.cpu_s_per_1000,
            Some(e.cpu_s_per_1000),
            "s",
            None,
        );
        if let (Some(outside), Some(busy)) = (p.outside_store_us, p.load_core_busy) {
            row(
                rows,
                "B1 server CPU per message outside the store",
                outside,
                None,
                "µs",
                None,
            );
            // All of the server's core for what is left once the store costs nothing: an upper
            // bound that no change to the store can lift.
            row(
                rows,
                "B1 bound: rate if the store cost nothing (one core busy)",
                1e6 / outside,
                Some(rate(&ejabberd)),
                "msgs/s",
                Some("needs >= 2.00"),
            );
            row(
                rows,
                "B1 load generator core busy at that rate",
                busy * 100.0,
                None,
                "%",
                None,
            );
        }
        row(
            rows,
            "B1 messages lost at that rate",
            (p.sent - p.delivered) as f64,
            Some((e.sent - e.delivered) as f64),
            "msgs",
            Some("0"),
        );
    }
    if let Some((cluster_rate, c)) = &cluster {
        row(
            rows,
            "B1 2 nodes on PostgreSQL + NATS, one core: highest rate at p99 <= 50 ms",
            *cluster_rate as f64,
            Some(rate(&parley)),
            "msgs/s",
            Some("(peer: 1 node on SQLite)"),
        );
        row(
            rows,
            "B1 2 nodes: p99 delivery latency at that rate",
            c.p99_ms,
            parley.as_ref().map(|(_, p)| p.p99_ms),
            "ms",
            None,
        );
        row(
            rows,
            "B1 2 nodes: CPU per 1,000 messages (nodes, PostgreSQL, NATS)",
            c.cpu_s_per_1000,
            parley.as_ref().map(|(_, p)| p.cpu_s_per_1000),
            "s",
            None,
        );
    }
    Ok(())
}

pub(crate) async fn b2(plan: &Plan, rows: &mut Vec<Row>, nats: &[(usize, f64)]) -> Result<()> {
    let mut single_thousand = None;
    for (members, messages) in [(100usize, 1_000u64), (1_000, 200)] {
        let messages = if plan.quick { messages / 4 } else { messages };
        println!("B2: fan-out into a group of {members} online members, {messages} messages");
        let parley = parley::group_fan_out(Deployment::Single, members, messages, 16).await?;
        if members == 1_000 {
            single_thousand = Some(parley.deliveries_per_s);
        }
        let outside_store_us = parley.server_cpu.outside_store_us(parley.deliveries);
        println!(
            "  Parley   {:.0} deliveries/s ({} of {}), time to last recipient {:.1} ms, \
             store {:.0} % of server CPU, {outside_store_us:.2} µs/delivery outside it, \
             load core {:.0} % busy",
            parley.deliveries_per_s,
            parley.deliveries,
            parley.messages * (members as u64 - 1),
            parley.time_to_last_ms,
            parley.server_cpu.store_share() * 100.0,
            parley.load_core_busy * 100.0,
        );
        if plan.no_peers {
            continue;
        }
        let server = xmpp::Ejabberd::start(0)?;
        let ejabberd = xmpp::b2_room(&server, members, messages).await?;
        drop(server);
        println!(
            "  ejabberd {:.0} deliveries/s ({}), time to last recipient {:.1} ms",
            ejabberd.deliveries_per_s, ejabberd.deliveries, ejabberd.time_to_last_ms
        );
        row(
            rows,
            format!("B2 fan-out into {members} members"),
            parley.deliveries_per_s,
            Some(ejabberd.deliveries_per_s),
            "deliveries/s",
            None,
        );
        if let Some((_, ceiling)) = nats.iter().find(|(n, _)| *n == members) {
            row(
                rows,
                format!("B2 fan-out into {members} members vs NATS 1 to {members}"),
                parley.deliveries_per_s,
                Some(*ceiling),
                "deliveries/s",
                (members == 1_000).then_some(">= 0.50 (peer: NATS)"),
            );
            if members == 1_000 {
                row(
                    rows,
                    "B2 bound: 1000 members if the store cost nothing (one core busy)",
                    1e6 / outside_store_us,
                    Some(*ceiling),
                    "deliveries/s",
                    Some("needs >= 0.50"),
                );
            }
        }
        row(
            rows,
            format!("B2 load generator core busy, {members} members"),
            parley.load_core_busy * 100.0,
            None,
            "%",
            None,
        );
        row(
            rows,
            format!("B2 time to last recipient, {members} members"),
            parley.time_to_last_ms,
            Some(ejabberd.time_to_last_ms),
            "ms",
            None,
        );
    }
    if !plan.no_cluster {
        let (members, messages) = (1_000usize, if plan.quick { 50 } else { 200 });
        println!("B2: fan-out into {members} members, 2 nodes on PostgreSQL + NATS, one core");
        let cluster = parley::group_fan_out(CLUSTER, members, messages, 16).await?;
        println!(
            "  2 nodes  {:.0} deliveries/s ({} of {}), time to last recipient {:.1} ms, \
             PostgreSQL {:.0} % of the CPU of all processes, {:.1} µs/delivery in all",
            cluster.deliveries_per_s,
            cluster.deliveries,
            cluster.messages * (members as u64 - 1),
            cluster.time_to_last_ms,
            cluster.server_cpu.store_share() * 100.0,
            cluster.server_cpu.total_s / cluster.deliveries.max(1) as f64 * 1e6,
        );
        row(
            rows,
            "B2 2 nodes on PostgreSQL + NATS, one core: fan-out into 1000 members",
            cluster.deliveries_per_s,
            single_thousand,
            "deliveries/s",
            Some("(peer: 1 node on SQLite)"),
        );
    }
    Ok(())
}

pub(crate) async fn b3(plan: &Plan, rows: &mut Vec<Row>) -> Result<()> {
    let count = if plan.quick { 2_000 } else { 19_000 };
    println!("B3: {count} authenticated idle live connections");
    let f = parley::connection_density(count).await?;
    println!(
        "  {:.0} bytes per connection, {:.0} registrations+logins/s, idle CPU {:.2} %",
        f.bytes_per_connection, f.logins_per_s, f.idle_cpu_percent
    );
    row(
        rows,
        format!("B3 server memory per idle connection ({count})"),
        f.bytes_per_connection,
        None,
        "bytes",
        Some("<= 8,192"),
    );
    row(
        rows,
        "B3 registrations with login",
        f.logins_per_s,
        None,
        "per s",
        None,
    );
    row(
        rows,
        "B3 idle CPU with all connected",
        f.idle_cpu_percent,
        None,
        "% of a core",
        None,
    );
    Ok(())
}

pub(crate) async fn b4(plan: &Plan, rows: &mut Vec<Row>, raw_read: f64) -> Result<()> {
    let (users, per_user) = if plan.quick { (200, 20) } else { (1_000, 100) };
    let per_user = plan.per_user.unwrap_or(per_user);
    println!(
        "B4: {} offline recipients, {per_user} messages each, then all reconnect",
        users / 2
    );
    let parley = parley::offline_drain(users, per_user).await?;
    let drain_outside_store_us = parley.drain_cpu.outside_store_us(parley.drained);
    println!(
        "  Parley   enqueue {:.0}/s, drain {:.0}/s, {:.0} bytes stored per message; drain: store \
         {:.0} % of server CPU, {drain_outside_store_us:.2} µs/item outside it, load core {:.0} % busy",
        parley.enqueue_per_s,
        parley.drain_per_s,
        parley.bytes_per_message,
        parley.drain_cpu.store_share() * 100.0,
        parley.drain_load_core_busy * 100.0,
    );
    if plan.no_peers {
        return Ok(());
    }
    let server = xmpp::Ejabberd::start(0)?;
    let ejabberd = xmpp::b4_offline(&server, users / 2, per_user).await?;
    drop(server);
    println!(
        "  ejabberd enqueue {:.0}/s, drain {:.0}/s",
        ejabberd.enqueue_per_s, ejabberd.drain_per_s
    );
    row(
        rows,
        "B4 offline enqueue (durable acknowledgements)",
        parley.enqueue_per_s,
        Some(ejabberd.enqueue_per_s),
        "msgs/s",
        None,
    );
    row(
        rows,
        "B4 offline drain",
        parley.drain_per_s,
        Some(ejabberd.drain_per_s),
        "msgs/s",
        None,
    );
    row(
        rows,
        "B4 offline drain vs raw SQLite read rate",
        parley.drain_per_s,
        Some(raw_read),
        "msgs/s",
        Some(">= 0.50 (peer: raw SQLite)"),
    );
    row(
        rows,
        "B4 bound: drain if the store cost nothing (one core busy)",
        1e6 / drain_outside_store_us,
        Some(raw_read),
        "msgs/s",
        Some("needs >= 0.50"),
    );
    row(
        rows,
        "B4 load generator core busy during the drain",
        parley.drain_load_core_busy * 100.0,
        None,
        "%",
        None,
    );
    row(
        rows,
        "B4 bytes stored per queued message (200-byte text)",
        parley.bytes_per_message,
        None,
        "bytes",
        None,
    );
    Ok(())
}
