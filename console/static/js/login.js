// The login form, shown when the server answers 401.

import { login } from "./api.js";
import { h, replace } from "./dom.js";

// render shows the form; done is called after a successful login.
export function render(main, done) {
  const user = h("input", { name: "username", id: "login-username", autocomplete: "username", required: true });
  const pass = h("input", { name: "password", id: "login-password", type: "password", autocomplete: "current-password", required: true });
  const msg = h("p", { id: "login-error", class: "error", role: "alert", hidden: true });
  const button = h("button", { type: "submit", id: "login-submit" }, "Log in");
  const form = h(
    "form",
    {
      class: "login",
      id: "login-form",
      onsubmit: async (ev) => {
        ev.preventDefault();
        button.disabled = true;
        msg.hidden = true;
        try {
          await login(user.value, pass.value);
          done();
        } catch (err) {
          msg.hidden = false;
          replace(msg, err.status === 404 ? "This server has no login: authentication is off." : err.status === 401 ? "Wrong username or password." : err.message);
          pass.value = "";
          pass.focus();
        } finally {
          button.disabled = false;
        }
      },
    },
    h("h1", {}, "Log in"),
    h("label", {}, "Username", user),
    h("label", {}, "Password", pass),
    button,
    msg,
  );
  replace(main, form);
  user.focus();
}
