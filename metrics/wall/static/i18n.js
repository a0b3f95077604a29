// The wall's words, from the catalogue of the screen's locale (metrics/wall/catalogues/).
//
// The server sends the catalogue and a table of CLDR plural forms computed by Babel; the
// page never asks the TV's browser how to write a number or a word. For integers the
// plural form of en, uk and ru depends on n mod 100 only, hence the table's 0..199.

export function words(config) {
  const { entries, plural_table: table } = config.words;
  const form = (n) => table[n < table.length ? n : 100 + (n % 100)];
  const entry = (key) => {
    if (!(key in entries)) throw new Error(`no catalogue entry ${key}`);
    return entries[key];
  };
  return {
    // The template of a key (plural keys: the form for n), placeholders left in.
    template(key, n) {
      const found = entry(key);
      return typeof found === "string" ? found : found[form(n)] ?? found.other;
    },
    has(key) { return key in entries; },
    t(key, params = {}) { return fill(this.template(key), params); },
    tn(key, n, params = {}) { return fill(this.template(key, n), { n, ...params }); },
  };
}

export function fill(text, params) {
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

// A template into a node, each placeholder as a bold span (its tone a class), no innerHTML.
export function fillNode(node, text, params) {
  node.replaceChildren();
  let at = 0;
  for (const match of text.matchAll(/\{(\w+)\}/g)) {
    node.append(text.slice(at, match.index));
    const value = params[match[1]];
    const bold = document.createElement("b");
    if (value && typeof value === "object") {
      bold.textContent = value.text;
      if (value.tone) bold.className = value.tone;
    } else {
      bold.textContent = value == null ? match[0] : String(value);
    }
    node.append(bold);
    at = match.index + match[0].length;
  }
  node.append(text.slice(at));
}
