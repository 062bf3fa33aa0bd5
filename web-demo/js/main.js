// Entry point: switches between the live room and the compare view (by URL hash) and starts
// each view the first time it is shown.
import { initCompare } from './compare.js';
import { initRoom } from './room.js';
import { $ } from './ui.js';

const started = {};
const init = { room: initRoom, compare: initCompare };

function show() {
  const view = location.hash === '#compare' ? 'compare' : 'room';
  for (const name of Object.keys(init)) {
    $(`#view-${name}`).hidden = name !== view;
    $(`.views a[data-view=${name}]`).classList.toggle('active', name === view);
  }
  // The header's connection chip is the live room's; each compare pane has its own.
  $('#conn').hidden = view !== 'room';
  if (!started[view]) started[view] = init[view]();
}

window.addEventListener('hashchange', show);
show();
