// Time-series charts with uPlot (served by the settlement at /assets/vendor/, loaded by
// index.html as the global `uPlot`). A chart follows its container's width, so it fits a phone.

import { h } from './dom.js';

const COLORS = ['#0f7b4a', '#c2410c', '#1d4ed8', '#7c3aed'];

/**
 * A line (or bar) chart in `container`: `x` are ms epochs, `series` are [{ label, values, bars? }]
 * with numbers (or null for a gap). Returns the chart, or a note when there is nothing to draw.
 */
export function timeChart(container, { x, series, height = 220, yLabel = '' }) {
  container.replaceChildren();
  if (!x.length) {
    container.append(h('p', { class: 'empty' }, 'No data for the chart yet.'));
    return null;
  }
  if (typeof globalThis.uPlot !== 'function') {
    container.append(h('p', { class: 'empty' }, 'The chart library did not load.'));
    return null;
  }
  const width = () => Math.max(240, Math.floor(container.getBoundingClientRect().width || 320));
  const opts = {
    width: width(),
    height,
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true } },
    axes: [{}, { label: yLabel, size: 60 }],
    series: [
      {},
      ...series.map((s, i) => ({
        label: s.label,
        stroke: COLORS[i % COLORS.length],
        width: 2,
        ...(s.bars ? { paths: globalThis.uPlot.paths.bars({ size: [0.6, 40] }), fill: `${COLORS[i % COLORS.length]}55` } : {}),
        ...(s.stepped ? { paths: globalThis.uPlot.paths.stepped({ align: 1 }) } : {}),
      })),
    ],
  };
  const chart = new globalThis.uPlot(opts, [x.map((ms) => ms / 1000), ...series.map((s) => s.values)], container);
  const resize = new ResizeObserver(() => chart.setSize({ width: width(), height }));
  resize.observe(container);
  return { chart, destroy: () => (resize.disconnect(), chart.destroy()) };
}

/** A decimal string from the API as a number for plotting only (figures shown stay strings). */
export const plotNumber = (s) => (s === null || s === undefined ? null : Number(s));
