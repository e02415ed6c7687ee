// The TV home screen, shaped for a 10-foot UI: rows of tiles, each with one image and a
// progress bar instead of raw bookmark seconds.
export default function transform(data, ctx) {
  const profile = data && data.profile;
  if (!profile) {
    return { error: "unknown profile", profileId: ctx.variables.profileId };
  }
  return {
    profile: profile.name,
    version: ctx.version,
    rows: (profile.rows || []).map((row) => ({
      title: row.name,
      tiles: (row.titles || []).map((t) => ({
        id: t.id,
        label: `${t.name} (${t.year})`,
        image: t.artwork ? t.artwork.url : null,
        stars: t.rating ? Math.round(t.rating.average * 2) / 2 : null,
        resumeAt: t.bookmark ? t.bookmark.positionSeconds : 0,
      })),
    })),
  };
}
