// A group's Members panel: who is in it (admins marked), add, remove, leave.
import type { GroupState } from "./core";
import { alertLine, button, el } from "./dom";
import { openPanel } from "./panel";
import { call, groupName, problem, session } from "./state";

/// `changed` runs after anything that changes the group (the chat redraws its notices).
export function membersPanel(host: HTMLElement, opener: HTMLElement, chat: string, changed: () => void): void {
  const panel = openPanel(host, opener, `Members of ${chat}`, "members-panel");
  const name = groupName(chat);
  const members = el("ul", { class: "members", "aria-label": "Members" });
  const summary = el("p", { class: "muted" }, "Loading…");
  const failure = alertLine({ "data-testid": "members-error" });
  const input = el("input", { "data-testid": "member-name", placeholder: "username, or several: dave, erin", "aria-label": "Add members (comma-separated)", autocomplete: "off" });
  const add = el("button", { "data-testid": "add-member", type: "submit" }, "Add");
  const form = el("form", { class: "row add-member" }, input, add);
  const leave = button("Leave group", { class: "danger", "data-testid": "leave" }, async () => {
    if (!confirm(`Leave ${chat}? You stop receiving its messages; a member can add you again.`)) return;
    leave.disabled = true;
    failure.textContent = "";
    try {
      await call("leave", name);
      panel.close();
      changed();
    } catch (err) {
      failure.textContent = `Could not leave: ${problem(err)}`;
      leave.disabled = false;
    }
  });

  const draw = (group: GroupState) => {
    const me = session.username;
    // Only admins remove others (a group without roles lets anyone).
    const mayRemove = group.admins.length === 0 || group.admins.includes(me);
    summary.textContent = `${group.members.length} member${group.members.length === 1 ? "" : "s"} · ${group.devices} device${group.devices === 1 ? "" : "s"}`;
    members.replaceChildren(...group.members.map((user) => {
      const row = el("li", { "data-testid": "member", "data-user": user },
        el("span", { class: "name" }, user === me ? `${user} (you)` : user));
      if (group.admins.includes(user)) row.append(el("span", { class: "badge", "data-testid": "admin" }, "admin"));
      if (mayRemove && user !== me) {
        const remove: HTMLButtonElement = button("Remove", { class: "small", "data-testid": "remove-member", "data-user": user, "aria-label": `Remove ${user}` }, async () => {
          remove.disabled = true;
          failure.textContent = "";
          try {
            await call("removeMembers", name, [user]);
            await refresh();
            changed();
          } catch (err) {
            failure.textContent = `Could not remove ${user}: ${problem(err)}`;
            remove.disabled = false;
          }
        });
        row.append(remove);
      }
      return row;
    }));
  };
  const refresh = async () => {
    try {
      draw(await call<GroupState>("group", chat));
    } catch (err) {
      summary.textContent = "";
      failure.textContent = `Could not load the members: ${problem(err)}`;
    }
  };

  form.onsubmit = async (e) => {
    e.preventDefault();
    const users = input.value.split(",").map((u) => u.trim()).filter(Boolean);
    if (users.length === 0) return;
    add.disabled = true;
    failure.textContent = "";
    try {
      await call("addMembers", name, users);
      input.value = "";
      await refresh();
      changed();
    } catch (err) {
      failure.textContent = `Could not add ${users.join(", ")}: ${problem(err)}`;
    } finally {
      add.disabled = false;
    }
  };

  panel.body.append(summary, members, el("h4", {}, "Add people"), form, failure, el("hr"), leave);
  void refresh();
}
