#!/usr/bin/env node
// Compiles Token.sol and Pool.sol with the pinned solcjs from /.ci/node and
// writes <Name>.bin (hex creation bytecode, no 0x prefix, single line).
//
//   (cd .ci/node && npm ci) && node tools/tests/contracts/build.js [--print]
//
// --print additionally prints function selectors and event topic0 hashes.
'use strict';
const fs = require('fs');
const path = require('path');

const nodeModules = path.resolve(__dirname, '../../../.ci/node/node_modules');
const solc = require(path.join(nodeModules, 'solc'));
const { keccak256 } = require(path.join(nodeModules, 'js-sha3')); // solc dependency

const CONTRACTS = ['Token', 'Pool'];

const input = {
  language: 'Solidity',
  sources: Object.fromEntries(
    CONTRACTS.map((c) => [`${c}.sol`, { content: fs.readFileSync(path.join(__dirname, `${c}.sol`), 'utf8') }]),
  ),
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: 'cancun',
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.methodIdentifiers'] } },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === 'error');
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);

const print = process.argv.includes('--print');
console.log(`solc ${solc.version()}`);
for (const c of CONTRACTS) {
  const out = output.contracts[`${c}.sol`][c];
  const bin = out.evm.bytecode.object;
  fs.writeFileSync(path.join(__dirname, `${c}.bin`), bin);
  console.log(`${c}.bin: ${bin.length / 2} bytes`);
  if (!print) continue;
  for (const [sig, sel] of Object.entries(out.evm.methodIdentifiers)) console.log(`  0x${sel}  ${sig}`);
  for (const ev of out.abi.filter((x) => x.type === 'event')) {
    const sig = `${ev.name}(${ev.inputs.map((i) => i.type).join(',')})`;
    console.log(`  0x${keccak256(sig)}  event ${sig}`);
  }
}
