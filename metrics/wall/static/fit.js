// Fitting text into its cell: nothing on the wall is cut off.
//
// A text that overflows its cell shrinks step by step; an amount that does not fit at 70 %
// of its size switches to its compact form (both forms come formatted from the server).
// Names wrap to two lines first (wall.css); more than that shrinks them too.
import { fillNode } from "./i18n.js";

export const overflows = (node) =>
  node.scrollWidth > node.clientWidth + 0.5 || node.scrollHeight > node.clientHeight + 1;

// Shrinks the node's text until it fits, down to ``floor`` of its styled size.
export function shrink(node, floor) {
  node.style.fontSize = "";
  const base = parseFloat(getComputedStyle(node).fontSize);
  let size = base;
  while (overflows(node) && size > base * floor) {
    size *= 0.92;
    node.style.fontSize = `${size}px`;
  }
  return !overflows(node);
}

// An amount: the full form if it fits at 70 % of the size, else the compact form.
export function fitMoney(node, money) {
  node.textContent = money.full;
  if (shrink(node, 0.7) || money.short === money.full) {
    if (overflows(node)) shrink(node, 0.3);
    return;
  }
  node.textContent = money.short;
  shrink(node, 0.3);
}

export function fitText(node, text) {
  node.textContent = text;
  shrink(node, 0.4);
}

// Fits again every fitted text under root (a resize, or rows just attached: a detached
// node has no size to measure).
export function refit(root = document) {
  for (const node of root.querySelectorAll("[data-fit]")) {
    if (node.dataset.fit === "money") fitMoney(node, JSON.parse(node.dataset.money));
    else if (node.dataset.fit === "name") fitName(node, node.textContent);
    else shrink(node, 0.4);
  }
}

// A person's name: on one line if it fits at 60 % of the size (rows stay one line high,
// so that a screen's rows fit its panel), else on two lines, smaller only if need be.
export function fitName(node, text) {
  node.dataset.fit = "name";
  node.textContent = text;
  node.classList.remove("wrapped");
  if (shrink(node, 0.6)) return;
  node.classList.add("wrapped");
  shrink(node, 0.4);
}

export function setName(node, text) {
  if (node.textContent === text && node.dataset.fit === "name" && !overflows(node)) return;
  fitName(node, text);
}

export function setMoney(node, money) {
  const key = JSON.stringify(money);
  node.dataset.fit = "money";
  if (node.dataset.money === key && !overflows(node)) return;
  node.dataset.money = key;
  fitMoney(node, money);
}

export function setText(node, text) {
  node.dataset.fit = "text";
  if (node.textContent === text && !overflows(node)) return;
  fitText(node, text);
}

export function setTemplate(node, template, params) {
  node.dataset.fit = "text";
  fillNode(node, template, params);
  shrink(node, 0.4);
}


// The names of a list in one size (the smallest any of them needed): a column of names
// in mixed sizes reads as mixed importance.
export function evenNames(list) {
  const names = [...list.querySelectorAll('[data-fit="name"]')];
  const sizes = names.map((node) => parseFloat(getComputedStyle(node).fontSize));
  const smallest = Math.min(...sizes);
  if (!names.length || names.some((node) => node.classList.contains("wrapped"))) return;
  for (const node of names) node.style.fontSize = `${smallest}px`;
}
