// The main menu on phones: a disclosure button shows and hides the navigation.
// Without this script the button stays hidden and the menu is always shown (CSS keys on .has-menu-toggle).
(function () {
  'use strict';

  function setUp() {
    var header = document.querySelector('.site-header');
    var button = header && header.querySelector('.menu-toggle');
    var menu = button && document.getElementById(button.getAttribute('aria-controls'));
    if (!menu) return;

    function open(state) {
      button.setAttribute('aria-expanded', state ? 'true' : 'false');
    }

    open(false);
    header.classList.add('has-menu-toggle');
    // A button: Enter and Space toggle it too.
    button.addEventListener('click', function () {
      open(button.getAttribute('aria-expanded') !== 'true');
    });
    // Escape closes the open menu and gives the focus back to its button.
    header.addEventListener('keydown', function (event) {
      if (event.key !== 'Escape' || button.getAttribute('aria-expanded') !== 'true') return;
      if (!menu.contains(event.target) && event.target !== button) return;
      if (!button.getClientRects().length) return;  // a wide screen: no button, the menu stays
      open(false);
      button.focus();
    });
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', setUp);
  } else {
    setUp();
  }
})();
