
(function(){
'use strict';
const D = JSON.parse(document.getElementById('report-data').textContent);
let current = 0, layer = 0, demoLayer = D.demoLayers.length ? D.demoLayers[0] : null;
let demoPos = [0, 0], timer = null;
const $ = id => document.getElementById(id);
const fmt = v => (Math.abs(v) >= 1000 || (Math.abs(v) < 0.001 && v !== 0)) ? v.toExponential(2) : v.toFixed(3);
function el(tag, attrs, text){ const e = document.createElement(tag); for (const k in (attrs||{})) e.setAttribute(k, attrs[k]); if (text !== undefined) e.textContent = text; return e; }

function buildChooser(){
  const c = $('chooser'); c.appendChild(el('span', {}, 'image: '));
  D.images.forEach((im, i) => { const b = el('button', {'class': 'image-choice', 'data-image': i}, im.name + (im.label !== null ? ' (' + im.label + ')' : ''));
    b.addEventListener('click', () => { current = i; render(); }); c.appendChild(b); });
  const s = $('layer-select');
  D.layers.forEach((name, i) => { s.appendChild(el('option', {value: i}, name)); });
  s.addEventListener('change', () => { layer = +s.value; renderActivations(); });
  const d = $('demo-layer');
  D.demoLayers.forEach(i => d.appendChild(el('option', {value: i}, D.layers[i])));
  d.addEventListener('change', () => { demoLayer = +d.value; demoPos = [0, 0]; renderDemo(); });
  $('demo-next').addEventListener('click', () => step(1));
  $('demo-prev').addEventListener('click', () => step(-1));
  $('demo-play').addEventListener('click', () => {
    if (timer) { clearInterval(timer); timer = null; $('demo-play').textContent = 'play'; }
    else { timer = setInterval(() => step(1), 600); $('demo-play').textContent = 'pause'; } });
}

function renderActivations(){
  const im = D.images[current], L = im.layers[layer];
  $('act-original').src = im.original;
  $('act-caption').textContent = im.name + (im.label !== null ? ', label ' + im.label : '') + ', predicted ' + im.predicted + (im.notes.length ? ' (' + im.notes.join('; ') + ')' : '');
  $('act-view').src = L.src;
  $('act-view').setAttribute('data-layer', layer); $('act-view').setAttribute('data-image', current);
  let text = 'volume ' + L.shape.join('x') + (L.shape.length === 3 && L.shown < L.shape[2] ? ' (first ' + L.shown + ' slices shown)' : '') +
    '; min ' + fmt(L.min) + ', max ' + fmt(L.max) + ', mean ' + fmt(L.mean);
  if (L.dead !== undefined) text += '; dead ReLUs ' + (100 * L.dead).toFixed(1) + '%';
  $('act-stats').textContent = text;
  const s = $('scores'); s.textContent = '';
  const order = im.probabilities.map((p, i) => i).sort((a, b) => im.probabilities[b] - im.probabilities[a]).slice(0, 10);
  order.forEach((c, n) => { const row = el('div', {'class': 'bar scorebar' + (n === 0 ? ' top' : '')});
    row.appendChild(el('span', {}, D.classes[c])); const bar = el('i'); bar.style.width = (200 * im.probabilities[c]).toFixed(1) + 'px';
    row.appendChild(bar); row.appendChild(el('b', {}, (100 * im.probabilities[c]).toFixed(1) + '% (score ' + fmt(im.scores[c]) + ')')); s.appendChild(row); });
}

function renderExplanations(){
  const im = D.images[current], box = $('explanations'); box.textContent = '';
  $('explain-class').textContent = im.predicted;
  im.explanations.forEach(e => { const f = el('figure');
    if (e.error) { f.appendChild(el('p', {}, e.name + ': not available (' + e.error + ')')); }
    else { f.appendChild(el('img', {src: e.src, alt: e.name, 'class': 'explanation'}));
      const lg = el('div', {'class': 'legend'}); lg.appendChild(el('img', {src: D.colorbars[e.cmap], alt: 'colour scale'}));
      const ends = el('span'); ends.appendChild(el('i', {}, fmt(e.cmap === 'signed' ? -Math.max(Math.abs(e.low), Math.abs(e.high)) : e.low)));
      ends.appendChild(el('i', {}, fmt(e.cmap === 'signed' ? Math.max(Math.abs(e.low), Math.abs(e.high)) : e.high))); lg.appendChild(ends); f.appendChild(lg); }
    f.appendChild(el('figcaption', {}, e.name)); box.appendChild(f); });
}

function heat(v, m){ const t = m > 0 ? Math.max(-1, Math.min(1, v / m)) : 0;
  return t >= 0 ? 'rgb(255,' + Math.round(255 - 180 * t) + ',' + Math.round(255 - 180 * t) + ')' : 'rgb(' + Math.round(255 + 180 * t) + ',' + Math.round(255 + 180 * t) + ',255)'; }

function numbers(title, grid){ const w = el('div'); w.appendChild(el('h4', {}, title)); const t = el('table', {'class': 'numbers'});
  grid.forEach(r => { const tr = el('tr'); r.forEach(v => tr.appendChild(el('td', {title: v.toFixed(6)}, v.toFixed(2)))); t.appendChild(tr); }); w.appendChild(t); return w; }
// The demo's sums in millionths, as integers: every sum shown is the exact sum of the figures shown beside it.
const micro = v => Math.round(v * 1e6), shown = n => (n / 1e6).toFixed(6);

function step(delta){ const d = D.images[current].demos[demoLayer]; if (!d) return;
  const n = d.out_hw[0] * d.out_hw[1]; let k = (demoPos[0] * d.out_hw[1] + demoPos[1] + delta + n) % n;
  demoPos = [Math.floor(k / d.out_hw[1]), k % d.out_hw[1]]; renderDemo(); }

function renderDemo(){
  const box = $('demo-grids'); box.textContent = '';
  if (demoLayer === null) { $('demo-sum').textContent = 'This network has no top-level CONV layer.'; return; }
  const d = D.images[current].demos[demoLayer];
  $('demo-layer').value = demoLayer;
  const [i, j] = demoPos, rows = [], cols = [];
  for (let a = 0; a < d.F[0]; a++) rows.push(i * d.S[0] + a * d.dilation[0]);
  for (let c = 0; c < d.F[1]; c++) cols.push(j * d.S[1] + c * d.dilation[1]);
  $('demo-position').textContent = 'output position (' + i + ', ' + j + ') of ' + d.out_hw[0] + 'x' + d.out_hw[1] + ', filter ' + d.k;
  let total = 0;
  const terms = [];
  for (let s = 0; s < d.depth; s++) {
    const X = d.input[s], Wt = d.weights[s];
    const win = rows.map(r => cols.map(c => X[r][c])), prod = win.map((r, a) => r.map((v, c) => v * Wt[a][c]));
    const part = micro(prod.flat().reduce((p, q) => p + q, 0)); total += part; terms.push(part);
    if (s >= d.shown_depth) continue;
    const m = Math.max(...X.flat().map(Math.abs)) || 1;
    const wrap = el('div'); wrap.appendChild(el('h4', {}, 'input slice ' + s + ' (padded ' + X.length + 'x' + X[0].length + ')'));
    const t = el('table', {'class': 'input-slice'});
    X.forEach((r, ri) => { const tr = el('tr'); r.forEach((v, ci) => { const td = el('td', {title: v.toFixed(4)}); td.style.background = heat(v, m);
      if (rows.includes(ri) && cols.includes(ci)) td.className = 'rf'; tr.appendChild(td); }); t.appendChild(tr); });
    wrap.appendChild(t); box.appendChild(wrap);
    box.appendChild(numbers('receptive field, slice ' + s, win));
    box.appendChild(numbers('filter ' + d.k + ', slice ' + s, Wt));
    box.appendChild(numbers('products (sum ' + shown(part) + ')', prod));
  }
  const outWrap = el('div'); outWrap.appendChild(el('h4', {}, 'output slice ' + d.k));
  const om = Math.max(...d.output.flat().map(Math.abs)) || 1, ot = el('table', {'class': 'output-slice'});
  d.output.forEach((r, ri) => { const tr = el('tr'); r.forEach((v, ci) => { const td = el('td', {title: v.toFixed(4)}); td.style.background = heat(v, om);
    if (ri === i && ci === j) td.className = 'out'; tr.appendChild(td); }); ot.appendChild(tr); });
  outWrap.appendChild(ot); box.appendChild(outWrap);
  const bias = micro(d.bias), value = total + bias, expected = d.output[i][j];
  const hidden = d.depth > d.shown_depth ? ' (' + (d.depth - d.shown_depth) + ' more depth slice' + (d.depth - d.shown_depth > 1 ? 's' : '') + ' not drawn: ' + shown(terms.slice(d.shown_depth).reduce((p, q) => p + q, 0)) + ')' : '';
  const p = $('demo-sum'); p.textContent = 'sum of products over ' + d.depth + ' depth slice' + (d.depth > 1 ? 's' : '') + hidden + ' = ' + shown(total) + ', plus bias ' + shown(bias) + ' = ' + shown(value) + '; volnet\'s output: ' + expected.toFixed(6) + ' (difference ' + (value / 1e6 - expected).toExponential(1) + ': the figures are rounded to 6 decimals, volnet adds in float32)';
  p.setAttribute('data-sum', value / 1e6); p.setAttribute('data-output', expected); p.setAttribute('data-position', i + ',' + j);
}

function render(){
  document.querySelectorAll('.image-choice').forEach((b, i) => b.classList.toggle('on', i === current));
  renderActivations(); renderExplanations(); renderDemo();
}
buildChooser(); render();
})();
