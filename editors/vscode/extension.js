// The dualnet extension: starts `dualnet lsp` (stdio) for .dnet files.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace
    .getConfiguration("dualnet")
    .get("server.command", ["dualnet", "lsp"]);
  const server = { command, args };
  client = new LanguageClient(
    "dualnet",
    "dualnet language server",
    { run: server, debug: server },
    { documentSelector: [{ language: "dnet" }] }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
