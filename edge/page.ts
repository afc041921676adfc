/** The web page for people: upload, browse, play. Placeholder until the page lands. */
export const PAGE_HTML = "<!doctype html><title>Meshgate</title><h1>Meshgate</h1>";
