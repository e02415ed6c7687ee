// Field resolvers for the facade schema: each export is named by an @js field and called as
// fn(parent, args) with the parent object's JSON. Pure JavaScript only: no IO, no imports.

/** `Title.runtime`: "1h 52m" from the catalog's runtimeMinutes. */
export function formatRuntime(title) {
  const m = title.runtimeMinutes;
  if (typeof m !== "number") return null;
  const h = Math.floor(m / 60);
  return h > 0 ? `${h}h ${m % 60}m` : `${m}m`;
}

/** `Title.label(withYear)`: the name, with the year when asked. */
export function titleLabel(title, args) {
  return args.withYear && title.year ? `${title.name} (${title.year})` : title.name;
}
